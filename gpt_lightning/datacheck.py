"""Token ids out of the vocabulary: found before training starts, not as an index error deep in a CUDA kernel.

Scanning a whole multi-GB bin at every start would cost tens of seconds, so: `prepare` records the largest id
of each split in meta.json (`max_token_id`), which is checked against vocab_size for free; bins up to
SCAN_LIMIT tokens (a tinyshakespeare-sized folder takes milliseconds) are also scanned, which catches bins
edited or written by other tools; larger bins without the record (made by another tool) are scanned in chunks at
each start, with a note.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from gpt_lightning.errors import UserError

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
