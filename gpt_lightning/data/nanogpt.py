"""A nanoGPT data folder, read as it is: `train.bin` and `val.bin` (raw uint16 token ids) and, for a character
dataset, `meta.pkl` ({vocab_size, itos, stoi}); no meta.json. nanoGPT's data/<dataset>/prepare.py scripts write
such folders; the DataModule takes one for `--data.data_dir` and never writes into it (a preset's `data.source`
does not prepare it either). Without meta.pkl the tokens are GPT-2's BPE, as nanoGPT assumes.
"""

from __future__ import annotations

import sys
from pathlib import Path

from gpt_lightning.data.bins import META_FILE, SPLITS, split_path
from gpt_lightning.errors import UserError
from gpt_lightning.files import TMP_MARK
from gpt_lightning.meta_pkl import GPT2_BPE_VOCAB, GPT2_TOKENIZER, META_PKL, PathLike, tokenizer_from_meta_pkl


def is_nanogpt_data_folder(data_dir: PathLike) -> bool:
    """train.bin and val.bin without our meta.json. (A folder that `prepare` was writing when it stopped has a
    meta.json that says so, data/bins.py's mark_incomplete, and may keep temporary files `.NAME.tmp-PID-HOST`.)"""
    d = Path(data_dir)
    if (d / META_FILE).exists() or not (split_path(d, "train").is_file() and split_path(d, "val").is_file()):
        return False
    return not any(d.glob(f".*{TMP_MARK}*"))


def nanogpt_data_meta(data_dir: PathLike) -> dict:
    """What our meta.json would say about a nanoGPT data folder, read from it and never written into it:
    uint16 bins, and the tokenizer from meta.pkl (GPT-2's BPE without one, as nanoGPT assumes)."""
    d = Path(data_dir)
    if (d / META_PKL).is_file():
        tokenizer = tokenizer_from_meta_pkl(d / META_PKL)
        vocab_size, what = len(tokenizer["chars"]), f"characters from {d / META_PKL}"
    else:
        tokenizer, vocab_size, what = dict(GPT2_TOKENIZER), GPT2_BPE_VOCAB, "GPT-2 BPE (no meta.pkl)"
    counts = {}
    for split in SPLITS:
        size = split_path(d, split).stat().st_size
        if size % 2:
            raise UserError(f"{split_path(d, split)} holds an odd number of bytes, not uint16 ids: it is truncated.")
        counts[f"{split}_tokens"] = size // 2
    print(f"note: {d} has no meta.json: reading it as a nanoGPT data folder (uint16 ids, {what}).", file=sys.stderr)
    source = {"name": str(d), "corpus": f"nanoGPT's {d.name}"}
    return {"vocab_size": vocab_size, "tokenizer": tokenizer, "dtype": "uint16", **counts, "source": source}
