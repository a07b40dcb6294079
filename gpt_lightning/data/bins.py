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
from typing import Optional, Union

import numpy as np

from gpt_lightning.errors import UserError
from gpt_lightning.files import AtomicFile, atomic_write
from gpt_lightning.tokenizer import check_tokenizer_meta

META_FILE = "meta.json"
# meta.json's only key while `prepare` replaces the bins
INCOMPLETE = "incomplete"
SPLITS = ("train", "val")
FORMAT_VERSION = 1


def token_dtype(vocab_size: int) -> np.dtype:
    return np.dtype(np.uint16) if vocab_size <= 2**16 else np.dtype(np.uint32)


def split_path(data_dir: Union[str, Path], split: str) -> Path:
    """The bin of one split: DATA_DIR/train.bin or DATA_DIR/val.bin."""
    return Path(data_dir) / f"{split}.bin"


def split_tokens(meta: dict, split: str) -> int:
    """Tokens in one split, as meta.json records them (0 when it does not say)."""
    return int(meta.get(f"{split}_tokens", 0))


def made_from(meta: dict) -> tuple[str, str]:
    """(corpus, tokenizer kind) that a folder's bins were made from."""
    return meta.get("source", {}).get("corpus"), meta.get("tokenizer", {}).get("kind")


def summary(meta: dict) -> str:
    """One line about a prepared folder, as `prepare` prints it."""
    return (
        f"{meta['source']['corpus']}: vocab {meta['vocab_size']}, {split_tokens(meta, 'train'):,} train and "
        f"{split_tokens(meta, 'val'):,} val tokens ({meta['dtype']})"
    )


def describe_missing(data_dir: Union[str, Path]) -> str:
    """Why a folder is not prepared, in a few words: `does not exist`, `has no meta.json`, or that a `prepare`
    stopped (or still running) half way through writing it."""
    if not Path(data_dir).exists():
        return "does not exist"
    if not Path(data_dir).is_dir():
        return "is a file, not a data folder"
    if _raw_meta(data_dir).get(INCOMPLETE):
        return "was left half-written by a `prepare` that stopped before it finished (or is still running)"
    return f"has no {META_FILE}"


# ---------------------------------------------------------------- writing (prepare)


class BinWriter:
    """Appends token arrays to a split's bin under a temporary name; `commit` renames it into place."""

    def __init__(self, data_dir: Path, split: str, dtype: np.dtype) -> None:
        self.dtype = dtype
        self.count = 0
        self.max_id = -1  # recorded in meta.json, so training can check ids against vocab_size without a scan
        self.target = AtomicFile(split_path(data_dir, split))

    def write(self, ids: Union[list[int], np.ndarray]) -> None:
        arr = np.asarray(ids, dtype=self.dtype)
        arr.tofile(self.target.file)
        self.count += arr.size
        if arr.size:
            self.max_id = max(self.max_id, int(arr.max()))

    def commit(self) -> None:
        self.target.commit()

    def discard(self) -> None:
        self.target.discard()


def make_meta(
    tokenizer: dict,
    vocab_size: int,
    dtype: np.dtype,
    writers: dict[str, BinWriter],
    val_fraction: float,
    source: dict,
    text_bytes: Optional[dict[str, int]] = None,
) -> dict:
    """meta.json's content for bins just written: the one place its schema is spelled out."""
    return {
        "format_version": FORMAT_VERSION,
        "vocab_size": vocab_size,
        "tokenizer": tokenizer,
        "dtype": dtype.name,
        **{f"{split}_tokens": w.count for split, w in writers.items()},
        # UTF-8 bytes of each split's text: bits per byte (val/bpb) compare across tokenizers (data/bytes.py)
        **{f"{split}_bytes": n for split, n in (text_bytes or {}).items()},
        "max_token_id": {split: w.max_id for split, w in writers.items()},
        "val_fraction": val_fraction,
        "source": source,  # name, corpus, documents, sha256 of the text
    }


def mark_incomplete(data_dir: Path) -> None:
    """Replace a folder's meta.json by one that says "being written": until the real one replaces it, training
    accepts none of its bins. (Removing meta.json would not do: bins without meta.json are a nanoGPT data
    folder, which training reads as it is.)"""
    write_meta(data_dir, {"format_version": FORMAT_VERSION, INCOMPLETE: True})


def write_meta(data_dir: Path, meta: dict) -> None:
    with atomic_write(Path(data_dir) / META_FILE, "w") as f:
        f.write(json.dumps(meta, indent=2, ensure_ascii=False) + "\n")


# ---------------------------------------------------------------- reading and checking (training)


def _raw_meta(data_dir: Union[str, Path]) -> dict:
    try:
        meta = json.loads((Path(data_dir) / META_FILE).read_text())
    except (OSError, ValueError):
        return {}
    return meta if isinstance(meta, dict) else {}


def read_meta(data_dir: Path) -> dict | None:
    """meta.json of a data folder, or None when there is none or it says a `prepare` has not finished."""
    if _raw_meta(data_dir).get(INCOMPLETE):
        return None
    path = Path(data_dir) / META_FILE
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise UserError(f"{path} is not valid JSON ({e}); prepare the folder again with --overwrite.") from e


def open_split(data_dir: Path, split: str, meta: dict) -> np.memmap:
    """Memory-map one split's bin, refusing a file whose size disagrees with meta.json."""
    path = split_path(data_dir, split)
    if not path.is_file():
        raise UserError(f"{path} is missing; run `python -m gpt_lightning prepare` for this folder again.")
    dtype = np.dtype(meta["dtype"])
    size = path.stat().st_size
    if size % dtype.itemsize:
        raise UserError(
            f"{path} holds {size} bytes, not a whole number of {dtype.name} tokens: the file is truncated or "
            "corrupt; prepare the folder again with --overwrite."
        )
    expected = meta.get(f"{split}_tokens")  # None: a folder made by another tool, sized by its file only
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
    path = split_path(data_dir, split)
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
    for split in SPLITS:
        n = split_tokens(meta, split)
        if split == "val" and n == 0:
            continue  # prepared with --val_fraction 0: a run without validation is fine
        if n <= block_size:
            fix = "lower --data.block_size" + (" or prepare with a larger --val_fraction" if split == "val" else "")
            raise UserError(
                f"The {split} split of {data_dir} has {n} tokens, too few for one window of block_size "
                f"{block_size}; {fix}."
            )


# What training reads from meta.json (an empty or hand-made one must not pass as a folder of 0 tokens).
REQUIRED_META = ("vocab_size", "tokenizer", "dtype", "train_tokens", "val_tokens")


def check_meta_fields(data_dir: Path, meta: dict) -> None:
    """meta.json holds what training reads, and a tokenizer its ids decode by."""
    missing = [key for key in REQUIRED_META if key not in meta]
    if missing:
        raise UserError(
            f"{Path(data_dir) / META_FILE} lacks {', '.join(missing)}: it was not written by `prepare`, or was edited; "
            "prepare the folder again with --overwrite."
        )
    check_tokenizer_meta(meta["tokenizer"], str(Path(data_dir) / META_FILE))


def check_folder(data_dir: Path, meta: dict, block_size: int) -> None:
    """Every check a prepared folder must pass before training starts: sizes, windows, token ids."""
    check_meta_fields(data_dir, meta)
    check_split_sizes(data_dir, meta, block_size)
    for split in SPLITS:
        check_token_ids(data_dir, meta, split, open_split(data_dir, split, meta))
