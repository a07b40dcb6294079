"""`prepare`: text in, token bins out.

A data folder holds `train.bin` and `val.bin` (token ids, uint16, or uint32 when the vocabulary does not fit)
and `meta.json`, which says how to read and decode them. Everything is written under temporary names and
renamed into place at the end, meta.json last, and a bin is only accepted by training when its size matches
the count in meta.json: an interrupted prepare never leaves data that training would take.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

from tqdm.auto import tqdm

from gpt_lightning.data.bins import (
    SPLITS,
    BinWriter,
    made_from,
    make_meta,
    mark_incomplete,
    read_meta,
    token_dtype,
    write_meta,
)
from gpt_lightning.data.encode import encode_batches, make_batches
from gpt_lightning.data.sources import Source, resolve_source
from gpt_lightning.errors import UserError, caused_by_full_disk, disk_full_message
from gpt_lightning.files import remove_stale_temporaries
from gpt_lightning.tokenizer import GPT2Tokenizer, Tokenizer, build_tokenizer


def split_documents(source: Source, val_fraction: float) -> Iterator[tuple[str, str]]:
    """(split, text) pieces. Few documents (a single text, as nanoGPT's corpora): each is cut at
    (1 - val_fraction) of its characters, so val is the tail. Many documents: every (1/val_fraction)-th
    document goes whole to val, deterministically, so the split never depends on the order of reading."""
    if val_fraction <= 0:
        for doc in source.documents():
            yield "train", doc
        return
    if len(source) < math.ceil(2 / val_fraction):
        for doc in source.documents():
            cut = int(len(doc) * (1 - val_fraction))
            yield "train", doc[:cut]
            yield "val", doc[cut:]
        return
    every = max(2, round(1 / val_fraction))
    for i, doc in enumerate(source.documents()):
        yield ("val" if (i + 1) % every == 0 else "train"), doc


def prepare(
    source: str,
    tokenizer: Literal["char", "gpt2"] = "char",
    out: Path = Path("data/shakespeare_char"),
    val_fraction: float = 0.1,
    overwrite: bool = False,
    num_proc: int = 1,
    batch_chars: int = 4_000_000,
) -> dict:
    """Tokenize a text corpus into train.bin / val.bin / meta.json.

    Args:
        source: `tinyshakespeare`; a .txt file (one document) or .jsonl file (one document per line, its
            "text" field); a folder of such files (read in sorted order); or `hf:NAME[:CONFIG]`, the train split
            of a Hugging Face dataset (`hf` extra; NAME may be a local folder).
        tokenizer: `char` (vocabulary = the corpus's sorted characters) or `gpt2` (tiktoken's GPT-2 BPE,
            `<|endoftext|>` after each document).
        out: the data folder to write.
        val_fraction: share of the text held out for validation.
        overwrite: replace a folder prepared with another tokenizer or corpus.
        num_proc: tokenizer processes; the bins are identical whatever the number.
        batch_chars: characters per unit of work; memory stays near 2 x num_proc of them, whatever the corpus.
    """
    if num_proc < 1 or batch_chars < 1:
        raise UserError(f"--num_proc and --batch_chars must be positive, got {num_proc} and {batch_chars}.")
    if not 0 <= val_fraction < 1:
        raise UserError(f"--val_fraction must be in [0, 1), got {val_fraction}.")
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} is a file; prepare writes a data folder: choose another --out.")
    src = resolve_source(source)
    existing = read_meta(out)
    if existing is not None and not overwrite:
        old_corpus, old_tok = made_from(existing)
        if old_tok != tokenizer or old_corpus != src.corpus:
            raise UserError(
                f"{out} already holds {old_corpus!r} bins made with the {old_tok!r} tokenizer; "
                f"pass --overwrite to replace them with {src.corpus!r} / {tokenizer!r}, or choose another --out."
            )

    tok = _tokenizer_for(src, tokenizer)
    created = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    try:
        return _write_bins(out, src, source, tok, val_fraction, num_proc, batch_chars)
    except OSError as e:
        if caused_by_full_disk(e):  # numpy's tofile names no file (nor, for a partial write, the errno): the folder
            raise UserError(disk_full_message(out)) from e
        raise
    finally:
        if created and out.is_dir() and not any(out.iterdir()):
            out.rmdir()  # a failed prepare leaves no empty folder behind it


def _write_bins(
    out: Path, src: Source, source: str, tok: Tokenizer, val_fraction: float, num_proc: int, batch_chars: int
) -> dict:
    """Encode the source into out/'s bins and meta.json (each in place only once complete)."""
    dtype = token_dtype(tok.vocab_size)
    remove_stale_temporaries(out)
    writers = {split: BinWriter(out, split, dtype) for split in SPLITS}
    digest = hashlib.sha256()
    text_bytes = dict.fromkeys(SPLITS, 0)  # UTF-8 bytes of each split's text, for val/bpb
    eot = tok.eot_token if isinstance(tok, GPT2Tokenizer) else None

    documents_read = 0

    def counted() -> Iterator[str]:
        nonlocal documents_read
        for doc in src.documents():
            documents_read += 1
            yield doc

    def pieces() -> Iterator[tuple[str, str, int]]:
        for split, text in split_documents(
            dataclasses.replace(src, reader=counted, num_documents=len(src)), val_fraction
        ):
            encoded = text.encode("utf-8")
            digest.update(encoded)
            text_bytes[split] += len(encoded)
            yield split, text, documents_read  # the progress bar's position once this piece is written

    try:
        batches = make_batches(pieces(), batch_chars)
        with tqdm(desc=f"prepare {src.corpus}", total=len(src), unit="doc", disable=None) as bar:
            tokens = 0
            for batch, arrays in encode_batches(batches, tok, eot, dtype, num_proc):
                for split, arr in arrays.items():
                    writers[split].write(arr)
                    tokens += arr.size
                elapsed = bar.format_dict["elapsed"] or 1e-9
                bar.set_postfix_str(f"{tokens:,} tokens, {tokens / elapsed:,.0f} tok/s", refresh=False)
                bar.update(batch.position - bar.n)  # redraws, postfix included
        counts = {split: w.count for split, w in writers.items()}
        if counts["train"] == 0 and counts["val"] > 0:
            raise UserError(
                f"Source {source!r} is too small to split: its {counts['val']} token(s) all went to val; use more text "
                "(or --val_fraction 0)."
            )
        if counts["train"] == 0:
            raise UserError(f"Source {source!r} has no text to train on; check that its files are not empty.")
        if counts["val"] == 0 and val_fraction > 0:
            raise UserError(f"Source {source!r} is too small to hold out a validation split; use more text.")
        source_meta = {"name": src.name, "corpus": src.corpus, "documents": len(src), "sha256": digest.hexdigest()}
        meta = make_meta(tok.to_meta(), tok.vocab_size, dtype, writers, val_fraction, source_meta, text_bytes)
        # meta.json says "incomplete" first, the new one comes last: in between, training accepts nothing here.
        mark_incomplete(out)
        for w in writers.values():
            w.commit()
        write_meta(out, meta)
    finally:
        for w in writers.values():
            w.discard()  # the temporary file of a bin that was not committed (nothing once committed)
    return meta


def _tokenizer_for(src: Source, kind: str) -> Tokenizer:
    if kind != "char":
        return build_tokenizer(kind)
    chars: set[str] = set()
    for doc in tqdm(src.documents(), desc="vocabulary", unit="doc", total=len(src), disable=None, leave=False):
        chars.update(doc)
    if not chars:
        raise UserError(f"Source {src.name!r} is empty; there is no text to build a vocabulary from.")
    return build_tokenizer("char", "".join(sorted(chars)))
