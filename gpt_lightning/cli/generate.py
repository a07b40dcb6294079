"""`python -m gpt_lightning generate`: sample text from a checkpoint.

    python -m gpt_lightning generate --ckpt_path out/shakespeare_char/version_0/checkpoints/last.ckpt \\
        --prompt "ROMEO:" --max_new_tokens 500 --num_samples 3 --temperature 0.8 --top_k 200 --seed 1337

The text goes to stdout (samples separated by a line of dashes, as nanoGPT's sample.py), everything else
to stderr, so `> out.txt` keeps only the text.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Literal, Optional

from gpt_lightning.errors import UserError
from gpt_lightning.generation import Sampling, encode_prompt, generate_batch, stream_text
from gpt_lightning.hardware import resolve_device
from gpt_lightning.weights.load import load_checkpoint_model

SEPARATOR = "---------------"


def read_prompt(prompt: Optional[str], prompt_file: Optional[str]) -> str:
    if prompt is not None and prompt_file is not None:
        raise UserError("Both --prompt and --prompt_file were given; pass only one of them.")
    if prompt_file is None:
        return "\n" if prompt is None else prompt
    try:
        return Path(prompt_file).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise UserError(
            f"Could not read --prompt_file {prompt_file} ({type(e).__name__}); pass a UTF-8 text file."
        ) from e


def generate(
    ckpt_path: str,
    meta: Optional[str] = None,
    prompt: Optional[str] = None,
    prompt_file: Optional[str] = None,
    max_new_tokens: int = 500,
    num_samples: int = 1,
    temperature: float = 0.8,
    top_k: Optional[int] = 200,
    top_p: Optional[float] = None,
    seed: int = 1337,
    device: Literal["auto", "cpu", "cuda"] = "auto",
    kv_cache: bool = True,
    stream: bool = True,
) -> list[str]:
    """Sample text from a trained model: a .ckpt written by `fit` (its tokenizer comes with it) or nanoGPT's ckpt.pt.

    Args:
        ckpt_path: the checkpoint, e.g. out/shakespeare_char/version_0/checkpoints/last.ckpt (a folder means its
            last.ckpt), or nanoGPT's out-*/ckpt.pt.
        meta: for nanoGPT's ckpt.pt: its dataset's meta.pkl (or the data folder holding it). Without it, meta.pkl is
            looked for as nanoGPT's sample.py does (data/<dataset>/meta.pkl under the current folder), then beside
            the checkpoint; with none, GPT-2's BPE.
        prompt: text to continue (default: a newline). An empty prompt starts a GPT-2 model at <|endoftext|>.
        prompt_file: read the prompt from this UTF-8 file instead.
        max_new_tokens: tokens to generate per sample.
        num_samples: how many samples to draw.
        temperature: 1 samples from the model's distribution, lower is more conservative, 0 is greedy (argmax).
        top_k: sample among the k most likely tokens only (None: all).
        top_p: then keep the smallest set of most likely tokens whose probability reaches p (nucleus sampling).
        seed: seed of the sampling RNG; the same seed and settings give the same text on the same hardware.
        device: auto picks the GPU where there is one.
        kv_cache: cache keys and values (--no_kv_cache re-runs the whole context for every token, for comparison).
        stream: print each sample as it is generated (--no_stream generates all samples at once as a batch).

    Returns:
        The samples, each the prompt followed by its continuation.
    """
    if max_new_tokens < 1:
        raise UserError(f"--max_new_tokens must be at least 1, got {max_new_tokens}.")
    if num_samples < 1:
        raise UserError(f"--num_samples must be at least 1, got {num_samples}.")
    sampling = Sampling(temperature=temperature, top_k=top_k, top_p=top_p, kv_cache=kv_cache, seed=seed)
    # `~` expanded once, as for every path option (a hub name such as gpt2 is left as it is)
    ckpt_path, meta, prompt_file = (os.path.expanduser(p) if p else p for p in (ckpt_path, meta, prompt_file))
    text = read_prompt(prompt, prompt_file)
    dev = resolve_device(device)

    model, tokenizer = load_checkpoint_model(ckpt_path, dev, meta)
    if tokenizer is None:
        raise UserError(
            f"Checkpoint {ckpt_path} does not say which tokenizer it was trained with; train it with `fit`."
        )
    encode_prompt(tokenizer, text)  # a char model's unknown characters: fail before printing anything
    cfg = model.config
    print(
        f"{ckpt_path}: {cfg.n_layer}x{cfg.n_embd} GPT ({model.get_num_params() / 1e6:.2f}M parameters), "
        f"block {cfg.block_size}, {tokenizer.kind} tokenizer, on {dev}, KV cache {'on' if kv_cache else 'off'}",
        file=sys.stderr,
    )
    generator = sampling.generator(dev)  # one RNG stream for all samples, so each sample differs

    start = time.perf_counter()
    samples = []
    if stream:
        for _ in range(num_samples):
            pieces = [text]
            sys.stdout.write(text)
            for piece in stream_text(model, tokenizer, text, max_new_tokens, sampling=sampling, generator=generator):
                sys.stdout.write(piece)
                sys.stdout.flush()
                pieces.append(piece)
            sys.stdout.write(f"\n{SEPARATOR}\n")
            samples.append("".join(pieces))
    else:
        batch = generate_batch(
            model, tokenizer, text, max_new_tokens, num_samples, sampling=sampling, generator=generator
        )
        for continuation in batch:
            samples.append(text + continuation)
            sys.stdout.write(f"{text}{continuation}\n{SEPARATOR}\n")
    sys.stdout.flush()
    seconds = time.perf_counter() - start
    n = num_samples * max_new_tokens
    print(f"{n} tokens in {seconds:.2f} s ({n / seconds:.1f} tokens/s)", file=sys.stderr)
    return samples


def main(args: list[str]) -> None:
    """The `generate` subcommand: jsonargparse over generate()'s signature, with --[no_]kv_cache and
    --[no_]stream as plain flags."""
    from jsonargparse import ActionYesNo, ArgumentParser

    flags = ("kv_cache", "stream")
    parser = ArgumentParser(
        prog="python -m gpt_lightning generate", description=generate.__doc__.split("\n")[0], exit_on_error=False
    )
    parser.add_function_arguments(generate, skip=set(flags), as_group=False)
    parser.add_argument(
        "--kv_cache",
        action=ActionYesNo,
        default=True,
        help="Cache keys and values (--no_kv_cache: re-run the whole context for every token, for comparison).",
    )
    parser.add_argument(
        "--stream",
        action=ActionYesNo,
        default=True,
        help="Print each sample as it is generated "
        "(--no_stream: generate all samples at once as a batch, then print them).",
    )
    config = parser.parse_args(args)
    try:
        generate(**config.as_dict())
    except BrokenPipeError:  # `... | head`: the reader has gone, which is not an error
        sys.stderr.close()
