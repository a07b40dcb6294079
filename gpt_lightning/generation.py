"""Text in, text out: the one generation path shared by `generate` and the TensorBoard sample callback.

The model side (KV cache, sampling) is GPT.generate_tokens in model.py; this file turns a prompt into ids
and the ids that come back into text, piece by piece.
"""

from __future__ import annotations

import codecs
from typing import Iterator, Optional

import torch

from gpt_lightning.errors import UserError
from gpt_lightning.model import GPT
from gpt_lightning.tokenizer import Tokenizer


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


def stream_text(
    model: GPT,
    tokenizer: Tokenizer,
    prompt: str,
    max_new_tokens: int,
    temperature: float = 1.0,
    top_k: Optional[int] = None,
    top_p: Optional[float] = None,
    kv_cache: bool = True,
    generator: Optional[torch.Generator] = None,
) -> Iterator[str]:
    """Yield the continuation of prompt piece by piece, as the tokens are sampled (possibly "" for a token
    that ends inside a character)."""
    idx = _prompt_tensor(model, encode_prompt(tokenizer, prompt))
    text = TextStream(tokenizer)
    for token in model.generate_tokens(
        idx, max_new_tokens, temperature, top_k, top_p, kv_cache, generator, tokenizer.vocab_size
    ):
        yield text.push([int(token[0, 0])])
    yield text.flush()


def generate_text(model: GPT, tokenizer: Tokenizer, prompt: str, max_new_tokens: int, **kwargs) -> str:
    """The prompt followed by its generated continuation."""
    return prompt + "".join(stream_text(model, tokenizer, prompt, max_new_tokens, **kwargs))


def generate_batch(
    model: GPT,
    tokenizer: Tokenizer,
    prompt: str,
    max_new_tokens: int,
    num_samples: int,
    temperature: float = 1.0,
    top_k: Optional[int] = None,
    top_p: Optional[float] = None,
    kv_cache: bool = True,
    generator: Optional[torch.Generator] = None,
) -> list[str]:
    """num_samples continuations of prompt, generated side by side as one batch (faster than one after the
    other where the hardware has parallelism to spare, e.g. a GPU); returns the continuations only."""
    idx = _prompt_tensor(model, encode_prompt(tokenizer, prompt), num_samples)
    steps = model.generate_tokens(
        idx, max_new_tokens, temperature, top_k, top_p, kv_cache, generator, tokenizer.vocab_size
    )
    tokens = torch.cat(list(steps), dim=1).tolist()  # (num_samples, max_new_tokens)
    return [tokenizer.decode(row) for row in tokens]
