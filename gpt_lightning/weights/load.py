"""Any path in, GPT out: a checkpoint written by `fit`, nanoGPT's `ckpt.pt`, or pretrained GPT-2 weights (a hub
name, a Hugging Face folder, a .safetensors file). `generate`, `export` and anything else that needs the
trained network, not the Trainer, start here; `model_for_run` is the model a training run starts from.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Optional, Union

import torch

from gpt_lightning.errors import UserError
from gpt_lightning.model import GPT, GPTConfig
from gpt_lightning.tokenizer import Tokenizer, compact_tokenizer_meta, tokenizer_difference, tokenizer_from_meta
from gpt_lightning.weights.checkpoint import (
    read_gpt_checkpoint,
)
from gpt_lightning.weights.hf import load_pretrained
from gpt_lightning.weights.nanogpt import NanoGPTRun, is_nanogpt_checkpoint, nanogpt_run
from gpt_lightning.weights.state_dict import (
    VOCAB_ROWS,
    build_model,
    check_state_dict,
    pad_token_rows,
)


def is_lightning_checkpoint(path: Union[str, Path]) -> bool:
    """A .ckpt/.pt file (existing or not) or a folder with a last.ckpt, as opposed to pretrained GPT-2 weights
    (a hub name, a Hugging Face folder, a .safetensors file), which weights/hf.py reads."""
    path = Path(path)
    if path.suffix in (".ckpt", ".pt", ".pth"):
        return True
    return path.is_dir() and ((path / "last.ckpt").is_file() or (path / "checkpoints" / "last.ckpt").is_file())


def load_checkpoint_model(
    path: Union[str, Path], device: Union[str, torch.device] = "cpu", meta: Optional[Union[str, Path]] = None
) -> tuple[GPT, Optional[Tokenizer]]:
    """The GPT of a checkpoint written by `fit` or nanoGPT (or of pretrained GPT-2 weights), on `device` and in eval
    mode, and its tokenizer (None if the file does not say which). `meta`: nanoGPT's meta.pkl (or its folder) for a
    nanoGPT checkpoint, which is otherwise looked for as nanoGPT's sample.py does (weights/nanogpt.py).
    Raises UserError for a missing, unreadable or mismatched file."""
    if is_lightning_checkpoint(path):
        config, state_dict, meta, _ = read_gpt_checkpoint(path, meta, tokenizer_required=True)
    else:
        if meta is not None:
            raise UserError(f"--meta applies to nanoGPT's ckpt.pt only, not to {path}; drop --meta.")
        config, state_dict, meta = load_pretrained(str(path))  # GPT-2 weights: hub name, HF folder, .safetensors
    model = build_model(config, state_dict, f"The weights in {path}")
    tokenizer = tokenizer_from_meta(meta, str(path)) if meta else None
    return model.to(device).eval(), tokenizer


def load_init_weights(
    init_from: str, continue_run: bool = False
) -> tuple[GPTConfig, dict, Optional[dict], Optional[NanoGPTRun]]:
    """(config, state dict, tokenizer meta or None, nanoGPT run or None) of `--model.init_from`: a checkpoint file
    (nanoGPT's ckpt.pt, or a .ckpt written by `fit`) or pretrained GPT-2 weights. With continue_run, the step
    and AdamW state of a nanoGPT checkpoint come too (`--model.init_optimizer_state`)."""
    if not is_lightning_checkpoint(init_from):
        if continue_run:
            raise UserError(
                f"--model.init_optimizer_state continues a nanoGPT run, but {init_from} is not a nanoGPT ckpt.pt; "
                "leave it unset."
            )
        return (*load_pretrained(init_from), None)
    config, sd, tokenizer, checkpoint = read_gpt_checkpoint(init_from)
    run = None
    if continue_run:
        if not is_nanogpt_checkpoint(checkpoint):
            raise UserError(
                f"--model.init_optimizer_state continues a nanoGPT run, but {init_from} was written by `fit`: "
                "continue it with --ckpt_path instead."
            )
        run = nanogpt_run(checkpoint, init_from)
    return config, sd, tokenizer, run


# ---------------------------------------------------------------- the model a training run starts from


def model_for_run(
    architecture: dict, init_from: str = "scratch", tokenizer: Optional[dict] = None, continue_run: bool = False
) -> tuple[GPT, Optional[dict], Optional[NanoGPTRun]]:
    """(the GPT, its tokenizer meta, nanoGPT's run or None) that `fit` starts from.

    architecture: GPTConfig's fields as the `--model.*` options give them, None where unset. From scratch, unset
    fields take GPTConfig's defaults (pad_vocab_multiple: 64 for GPT-2 BPE, 1 otherwise). With init_from, the
    architecture comes from the weights (see fit_pretrained) and the data's tokenizer must be theirs. With
    continue_run (init_optimizer_state), nanoGPT's step and AdamW state come too."""
    tokenizer = compact_tokenizer_meta(tokenizer) if tokenizer else None  # one line in hparams.yaml and checkpoints
    given = {k: v for k, v in architecture.items() if v is not None}
    if given.get("pad_vocab_multiple") is None:
        given["pad_vocab_multiple"] = default_pad_vocab_multiple(tokenizer)
    if init_from == "scratch":
        try:
            return GPT(GPTConfig(**given)), tokenizer, None
        except ValueError as e:  # n_embd not a multiple of n_head, a size below 1: the user's settings
            raise UserError(f"Invalid --model settings: {e}") from e
    config, sd, model_tokenizer, run = load_init_weights(init_from, continue_run)
    if architecture.get("pad_vocab_multiple") is None:
        given["pad_vocab_multiple"] = default_pad_vocab_multiple(tokenizer or model_tokenizer)
    config, sd, tokenizer = fit_pretrained(config, sd, model_tokenizer, init_from, given, tokenizer)
    return build_model(config, sd, source=init_from), compact_tokenizer_meta(tokenizer) if tokenizer else None, run


def default_pad_vocab_multiple(tokenizer: Optional[dict]) -> int:
    """--model.pad_vocab_multiple when unset: 64 for GPT-2's BPE (nanoGPT's 50304), 1 for anything else."""
    return 64 if (tokenizer or {}).get("kind") == "gpt2" else 1


# Settings a run may choose for pretrained weights: the data's vocabulary and window, dropout, padding.
RUN_SETTINGS = ("vocab_size", "block_size", "dropout", "pad_vocab_multiple")


def fit_pretrained(
    config: GPTConfig, sd: dict, tokenizer: Optional[dict], source: str, given: dict, data_tokenizer: Optional[dict]
) -> tuple[GPTConfig, dict, Optional[dict]]:
    """Fit pretrained weights to a run: refuse a given architecture setting that differs from the weights', check
    the data's tokenizer, crop the position table to block_size and the token table to the data's vocabulary, pad
    the token table to a multiple of pad_vocab_multiple rows (50257 -> 50304 for 64), set dropout."""
    for name, value in given.items():
        if name not in RUN_SETTINGS and value != getattr(config, name):
            raise UserError(
                f"--model.{name}={value} conflicts with the weights of {source}, which have {name}="
                f"{getattr(config, name)}; the architecture comes from the weights, so leave --model.{name} unset."
            )
    difference = tokenizer_difference(tokenizer, data_tokenizer) if data_tokenizer and tokenizer else None
    if difference:
        kind = tokenizer.get("kind")
        fix = (
            f"prepare the data with --tokenizer {kind}"
            if kind != data_tokenizer.get("kind")
            else "prepare the data from text with the same characters as the model's"
        )
        raise UserError(f"The data's tokens do not mean what {source}'s do ({difference}): {fix}.")
    tokenizer = data_tokenizer or tokenizer
    vocab_size, block_size = given.get("vocab_size"), given.get("block_size")
    if vocab_size is not None and vocab_size > config.vocab_size:
        raise UserError(
            f"The data has {vocab_size} token ids but {source} only knows {config.vocab_size}; prepare the data "
            "with the tokenizer the model was trained with."
        )
    vocab_size = vocab_size or config.vocab_size
    # ids past the data's vocabulary never occur: drop their rows (nanoGPT's 50304 padding, a padded checkpoint's
    # own), so the checkpoint's vocab_size is the data's; padding comes back below if asked for. (A tied lm_head is
    # the same tensor: cropped alike, and tied again when the model is built.)
    sd = {k: v[:vocab_size].clone() if k in VOCAB_ROWS and v.shape[0] > vocab_size else v for k, v in sd.items()}
    if block_size is not None and block_size != config.block_size:
        if block_size > config.block_size:
            raise UserError(
                f"block_size {block_size} is longer than the {config.block_size} positions {source} was trained "
                f"with; use --data.block_size {config.block_size} or less."
            )
        if "transformer.wpe.weight" in sd:  # nanoGPT's crop; a copy, so the checkpoint does not keep the whole table
            sd = {**sd, "transformer.wpe.weight": sd["transformer.wpe.weight"][:block_size].clone()}
    settings = {"vocab_size": vocab_size, "block_size": block_size or config.block_size}
    settings.update(dropout=given.get("dropout", 0.0), pad_vocab_multiple=given["pad_vocab_multiple"])
    config = GPTConfig(**{**asdict(config), **settings})
    return config, check_state_dict(pad_token_rows(sd, config), config, f"The weights in {source}"), tokenizer
