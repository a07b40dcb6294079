"""Bits per byte: a validation loss that compares across tokenizers.

A loss in nats per token depends on how much text a token holds (a character, or ~4 characters of GPT-2 BPE).
Divided by the bytes per token and converted to bits, it is the bits needed per byte of UTF-8 text, whatever the
tokenizer: val/bpb = val_loss_nats x tokens / (bytes x ln 2).

`prepare` records the UTF-8 bytes of each split's text in meta.json (`val_bytes`, `train_bytes`). A folder made
before that (or a nanoGPT folder) gets them counted once from its val bin: every token stands for a fixed run
of bytes (a character's UTF-8, or a BPE token's bytes), so the count is a weighted histogram of the ids.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path
from typing import Optional, Union

import numpy as np

from gpt_lightning.data.bins import open_split, read_meta, split_tokens, write_meta


def bits_per_byte(loss_nats, tokens_per_byte: float):
    """Bits per UTF-8 byte of a mean loss in nats per token (a float or a tensor, returned alike)."""
    return loss_nats * tokens_per_byte / math.log(2)


def token_byte_lengths(tokenizer_meta: dict, vocab_size: int) -> np.ndarray:
    """UTF-8 bytes each token id stands for (vocab_size,): a character's, or a GPT-2 BPE token's; GPT-2's
    `<|endoftext|>` separates documents and stands for no text (0)."""
    lengths = np.zeros(vocab_size, dtype=np.int64)
    if tokenizer_meta.get("kind") == "char":
        chars = tokenizer_meta["chars"]
        lengths[: len(chars)] = [len(c.encode("utf-8")) for c in chars]
        return lengths
    from gpt_lightning.tokenizer import tokenizer_from_meta

    encoding = tokenizer_from_meta(tokenizer_meta).encoding  # tiktoken's
    for i in range(min(vocab_size, encoding.n_vocab)):
        if i != encoding.eot_token:
            lengths[i] = len(encoding.decode_single_token_bytes(i))
    return lengths


def count_split_bytes(data_dir: Union[str, Path], meta: dict, split: str, chunk: int = 1 << 24) -> int:
    """UTF-8 bytes of a split's text, counted from its bin (in chunks: memory stays flat)."""
    tokens = open_split(Path(data_dir), split, meta)
    lengths = token_byte_lengths(meta["tokenizer"], int(meta["vocab_size"]))
    total = 0
    for start in range(0, len(tokens), chunk):
        ids = np.asarray(tokens[start : start + chunk])
        total += int(np.bincount(ids, minlength=len(lengths))[: len(lengths)] @ lengths)
    return total


def split_bytes(data_dir: Union[str, Path], meta: dict, split: str = "val") -> Optional[int]:
    """The UTF-8 bytes of a split: from meta.json, else counted once from the bin and recorded in our meta.json
    (never written into a nanoGPT folder, which has none). None for an empty split."""
    key = f"{split}_bytes"
    if meta.get(key) is None:
        if split_tokens(meta, split) == 0:
            return None
        print(f"note: counting the bytes of {data_dir}'s {split} split once, for val/bpb", file=sys.stderr)
        meta[key] = count_split_bytes(data_dir, meta, split)
        on_disk = read_meta(Path(data_dir))
        if on_disk is not None and on_disk.get(key) is None:
            try:
                write_meta(Path(data_dir), {**on_disk, key: meta[key]})
            except OSError:
                pass  # a read-only folder: counted again next time
    return int(meta[key]) or None
