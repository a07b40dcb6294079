"""Text in, text out: the one generation path shared by `generate` and the TensorBoard sample callback.

The model side (KV cache, sampling) is GPT.generate_tokens in model.py; this file turns a prompt into ids
and the ids that come back into text, piece by piece. How tokens are drawn is one `Sampling` object, built
(and checked) once by the command or callback and handed down to the model by keyword.
"""

from __future__ import annotations

import codecs
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Optional, Union

import torch

from gpt_lightning.errors import UserError
from gpt_lightning.model import GPT, check_sampling_args
from gpt_lightning.tokenizer import Tokenizer


@dataclass(frozen=True)
class Sampling:
    """How each next token is drawn.

    temperature: 1 samples from the model's distribution, lower is more conservative, 0 is greedy (argmax).
    top_k: sample among the k most likely tokens only (None: all).
    top_p: then keep the smallest set of most likely tokens whose probability reaches p (None: no cut).
    kv_cache: cache keys and values (False re-runs the whole context for every token; the same tokens).
    seed: seed of the sampling RNG (None: torch's global RNG).
    """

    temperature: float = 1.0
    top_k: Optional[int] = None
    top_p: Optional[float] = None
    kv_cache: bool = True
    seed: Optional[int] = None

    def __post_init__(self) -> None:
        try:
            check_sampling_args(temperature=self.temperature, top_k=self.top_k, top_p=self.top_p)
        except ValueError as e:  # settings come from the command line or a config: the user's to fix
            raise UserError(str(e)) from None

    def generator(self, device: Union[str, torch.device]) -> Optional[torch.Generator]:
        """A fresh RNG seeded with `seed` on device (None when there is no seed)."""
        return None if self.seed is None else torch.Generator(device=device).manual_seed(self.seed)


def encode_prompt(tokenizer: Tokenizer, prompt: str) -> list[int]:
    """The prompt's token ids. An empty prompt is GPT-2's `<|endoftext|>` (a document start) where the
    tokenizer has one; a char model has nothing to start from, so it needs at least one character."""
    ids = tokenizer.encode(prompt)  # a char outside the vocabulary raises a UserError naming it
    if not ids:
        eot = getattr(tokenizer, "eot_token", None)
        if eot is None:
            raise UserError("The prompt is empty; give at least one character (e.g. a newline) to start from.")
        ids = [eot]
    return ids


class TextStream:
    """Turns token ids into text as they arrive, without re-decoding what came before.

    A byte-level BPE token can end in the middle of a UTF-8 character (an emoji is often 2-3 GPT-2 tokens),
    so bytes go through an incremental UTF-8 decoder that holds an unfinished character back until its
    last byte arrives. What it yields, joined, equals tokenizer.decode(all ids).
    """

    def __init__(self, tokenizer: Tokenizer) -> None:
        self.tokenizer = tokenizer
        self.bytes_level = hasattr(tokenizer, "decode_bytes")
        self.utf8 = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def push(self, ids: list[int]) -> str:
        if not self.bytes_level:
            return self.tokenizer.decode(ids)  # one token, whole characters (char vocabulary)
        return self.utf8.decode(self.tokenizer.decode_bytes(ids))

    def flush(self) -> str:
        """What is held back at the end: an unfinished character becomes U+FFFD, as decode() does."""
        return self.utf8.decode(b"", final=True) if self.bytes_level else ""


def _prompt_tensor(model: GPT, ids: list[int], batch_size: int = 1) -> torch.Tensor:
    device = next(model.parameters()).device
    return torch.tensor([ids], dtype=torch.long, device=device).expand(batch_size, -1)  # (B, T)


def _new_tokens(
    model: GPT,
    idx: torch.Tensor,
    max_new_tokens: int,
    tokenizer: Tokenizer,
    sampling: Sampling,
    generator: Optional[torch.Generator],
) -> Iterator[torch.Tensor]:
    """The model's next tokens (B, 1); the RNG is `generator` (to continue one stream over several calls), else
    a fresh one from sampling.seed."""
    if generator is None:
        generator = sampling.generator(idx.device)
    return model.generate_tokens(
        idx,
        max_new_tokens,
        temperature=sampling.temperature,
        top_k=sampling.top_k,
        top_p=sampling.top_p,
        kv_cache=sampling.kv_cache,
        generator=generator,
        vocab_size=tokenizer.vocab_size,  # only ids the tokenizer can decode
    )


def stream_text(
    model: GPT,
    tokenizer: Tokenizer,
    prompt: str,
    max_new_tokens: int,
    *,
    sampling: Sampling = Sampling(),
    generator: Optional[torch.Generator] = None,
) -> Iterator[str]:
    """Yield the continuation of prompt piece by piece, as the tokens are sampled (possibly "" for a token
    that ends inside a character)."""
    idx = _prompt_tensor(model, encode_prompt(tokenizer, prompt))
    text = TextStream(tokenizer)
    for token in _new_tokens(model, idx, max_new_tokens, tokenizer, sampling, generator):
        yield text.push([int(token[0, 0])])
    yield text.flush()


def generate_text(
    model: GPT,
    tokenizer: Tokenizer,
    prompt: str,
    max_new_tokens: int,
    *,
    sampling: Sampling = Sampling(),
    generator: Optional[torch.Generator] = None,
) -> str:
    """The prompt followed by its generated continuation."""
    pieces = stream_text(model, tokenizer, prompt, max_new_tokens, sampling=sampling, generator=generator)
    return prompt + "".join(pieces)


def generate_batch(
    model: GPT,
    tokenizer: Tokenizer,
    prompt: str,
    max_new_tokens: int,
    num_samples: int,
    *,
    sampling: Sampling = Sampling(),
    generator: Optional[torch.Generator] = None,
) -> list[str]:
    """num_samples continuations of prompt, generated side by side as one batch (faster than one after the
    other where the hardware has parallelism to spare, e.g. a GPU); returns the continuations only."""
    idx = _prompt_tensor(model, encode_prompt(tokenizer, prompt), num_samples)
    steps = _new_tokens(model, idx, max_new_tokens, tokenizer, sampling, generator)
    tokens = torch.cat(list(steps), dim=1).tolist()  # (num_samples, max_new_tokens)
    return [tokenizer.decode(row) for row in tokens]
