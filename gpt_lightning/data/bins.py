"""The token-bin format, in one place: what a data folder holds and how it is read and checked.

A data folder holds `train.bin` and `val.bin` (token ids, uint16, or uint32 when the vocabulary does not fit)
and `meta.json`, which says how to read and decode them (vocab_size, tokenizer, dtype, token counts, the
largest id of each split, the source and its sha256). `prepare` writes it; the DataModule reads it.

Token ids out of the vocabulary are found before training starts, not as an index error deep in a CUDA
kernel. Scanning a whole multi-GB bin at every start would cost tens of seconds, so: `prepare` records the
largest id of each split in meta.json (`max_token_id`), which is checked against vocab_size for free; bins up to
SCAN_LIMIT tokens (a tinyshakespeare-sized folder takes milliseconds) are also scanned, which catches bins
edited or written by other tools; larger bins without the record (made by another tool) are scanned in chunks
at each start, with a note.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from gpt_lightning.errors import UserError

META_FILE = "meta.json"
SPLITS = ("train", "val")
FORMAT_VERSION = 1


def token_dtype(vocab_size: int) -> np.dtype:
    return np.dtype(np.uint16) if vocab_size <= 2**16 else np.dtype(np.uint32)


def read_meta(data_dir: Path) -> dict | None:
    """meta.json of a data folder, or None when there is none."""
    path = Path(data_dir) / META_FILE
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise UserError(f"{path} is not valid JSON ({e}); prepare the folder again with --overwrite.") from e



def open_split(data_dir: Path, split: str, meta: dict) -> np.memmap:
    """Memory-map one split's bin, refusing a file whose size disagrees with meta.json."""
    path = Path(data_dir) / f"{split}.bin"
    if not path.is_file():
        raise UserError(f"{path} is missing; run `python -m gpt_lightning prepare` for this folder again.")
    dtype = np.dtype(meta["dtype"])
    size = path.stat().st_size
    if size % dtype.itemsize:
        raise UserError(
            f"{path} holds {size} bytes, not a whole number of {dtype.name} tokens: the file is truncated or "
            "corrupt; prepare the folder again with --overwrite."
        )
    expected = meta.get(f"{split}_tokens")
    if expected is not None and size // dtype.itemsize != expected:
        raise UserError(
            f"{path} holds {size // dtype.itemsize} tokens but meta.json says {expected}: the folder is from an "
            "interrupted or mixed prepare; prepare it again with --overwrite."
        )
    return np.memmap(path, dtype=dtype, mode="r")


SCAN_LIMIT = 1 << 27  # tokens (256 MB of uint16): always scanned
CHUNK = 1 << 24


def first_out_of_range(tokens: np.ndarray, vocab_size: int) -> int:
    """Index of the first token id >= vocab_size, or -1."""
    for start in range(0, len(tokens), CHUNK):
        chunk = np.asarray(tokens[start : start + CHUNK])
        if chunk.size and chunk.max() >= vocab_size:
            return start + int(np.argmax(chunk >= vocab_size))
    return -1


def check_token_ids(data_dir: Path, meta: dict, split: str, tokens: np.ndarray) -> None:
    vocab_size = int(meta["vocab_size"])
    path = Path(data_dir) / f"{split}.bin"
    recorded = meta.get("max_token_id", {}).get(split)
    if recorded is not None and recorded >= vocab_size:
        raise UserError(
            f"{path} holds token id {recorded} but meta.json's vocab_size is {vocab_size}: the bins and meta.json "
            "do not belong together; prepare the folder again with --overwrite."
        )
    if recorded is not None and len(tokens) > SCAN_LIMIT:
        return
    if recorded is None and len(tokens) > SCAN_LIMIT:
        print(f"note: checking every token id of {path} once (meta.json has no max_token_id) ...", file=sys.stderr)
    at = first_out_of_range(tokens, vocab_size)
    if at >= 0:
        raise UserError(
            f"{path} holds token id {int(tokens[at])} at position {at}, outside meta.json's vocab_size {vocab_size}: "
            "the bin is corrupt or was made with another tokenizer; prepare the folder again with --overwrite."
        )


def check_split_sizes(data_dir: Path, meta: dict, block_size: int) -> None:
    """Each split must hold at least one window of block_size + 1 tokens; said at startup, not at the first
    validation."""
    for split in ("train", "val"):
        n = int(meta.get(f"{split}_tokens", 0))
        if split == "val" and n == 0:
            continue  # prepared with --val_fraction 0: a run without validation is fine
        if n <= block_size:
            fix = "lower --data.block_size" + (" or prepare with a larger --val_fraction" if split == "val" else "")
            raise UserError(
                f"The {split} split of {data_dir} has {n} tokens, too few for one window of block_size "
                f"{block_size}; {fix}."
            )
