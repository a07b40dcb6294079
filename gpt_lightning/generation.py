"""Text in, text out: the one generation path shared by `generate` and the TensorBoard sample callback."""

from __future__ import annotations

from typing import Iterator, Optional

import torch

from gpt_lightning.model import GPT
from gpt_lightning.tokenizer import Tokenizer


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
    """Yield the continuation of prompt piece by piece, as the tokens are sampled."""
    ids = tokenizer.encode(prompt)
    if not ids:
        raise ValueError("The prompt is empty after tokenization; give at least one token of text.")
    device = next(model.parameters()).device
    idx = torch.tensor([ids], dtype=torch.long, device=device)
    new_ids: list[int] = []
    emitted = ""
    for token in model.generate_tokens(idx, max_new_tokens, temperature, top_k, top_p, kv_cache, generator):
        new_ids.append(int(token[0, 0]))
        # decode the whole continuation each time: a BPE character can span several tokens
        text = tokenizer.decode(new_ids)
        if not text.endswith("\ufffd"):
            yield text[len(emitted) :]
            emitted = text
    text = tokenizer.decode(new_ids)
    if len(text) > len(emitted):
        yield text[len(emitted) :]


def generate_text(model: GPT, tokenizer: Tokenizer, prompt: str, max_new_tokens: int, **kwargs) -> str:
    """The prompt followed by its generated continuation."""
    return prompt + "".join(stream_text(model, tokenizer, prompt, max_new_tokens, **kwargs))
