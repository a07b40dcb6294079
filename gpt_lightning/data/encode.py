"""Tokenizing a corpus of any size with bounded memory, in parallel, in a fixed order.

`prepare` hands this module a stream of (split, text, position) pieces, each to be followed by the
end-of-text token (GPT-2) and `position` a progress mark (documents read so far) passed through. They are grouped
into batches of about `batch_chars` characters; each batch is tokenized by one of `num_proc` worker processes, and
the results come back in submission order, so the bins are identical whatever `num_proc` is. At most 2 x num_proc
batches are in flight, which bounds memory: the corpus is never held whole, and neither are its tokens.

Long documents are cut into pieces at a single space or newline between two non-space characters. GPT-2's
pre-tokenizer always starts a new token there, so the cut never changes the tokens (tests check it).
"""

from __future__ import annotations

import collections
import multiprocessing
import re
import signal
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Optional

import numpy as np

from gpt_lightning.tokenizer import Tokenizer, tokenizer_from_meta

# A whitespace character with non-whitespace on both sides: cutting just before it is safe for GPT-2's BPE.
_SAFE_CUT = re.compile(r"(?<=\S)\s(?=\S)")


def cut_text(text: str, max_chars: int) -> Iterator[str]:
    """Pieces of `text` of about `max_chars` characters at most, cut only at safe points (see module doc). A
    piece is longer only where max_chars of text hold no safe point (a run without single spaces)."""
    start = 0
    while len(text) - start > max_chars:
        end = start + max_chars
        # the last safe point in the second half of the window, else the first one after it
        cut = None
        for m in _SAFE_CUT.finditer(text, start + max_chars // 2, end):
            cut = m.start()
        if cut is None:
            m = _SAFE_CUT.search(text, end)
            if m is None:
                break
            cut = m.start()
        yield text[start:cut]
        start = cut
    yield text[start:]


@dataclass
class Batch:
    """Consecutive pieces, tokenized together by one worker."""

    pieces: list[tuple[str, str, bool]] = field(default_factory=list)  # (split, text, eot after it)
    chars: int = 0
    position: int = 0  # the progress mark of its last piece


def make_batches(pieces: Iterable[tuple[str, str, int]], batch_chars: int) -> Iterator[Batch]:
    batch = Batch()
    for split, text, position in pieces:
        batch.position = position
        if not text:  # nothing to encode, and no end-of-text token for an empty piece
            continue
        for part, last in _with_last(cut_text(text, batch_chars)):
            batch.pieces.append((split, part, last))  # the end-of-text token after the whole piece only
            batch.chars += len(part)
            if batch.chars >= batch_chars:
                yield batch
                batch = Batch(position=position)
    if batch.pieces or batch.position:
        yield batch


def _with_last(items: Iterator[str]) -> Iterator[tuple[str, bool]]:
    prev = next(items)
    for item in items:
        yield prev, False
        prev = item
    yield prev, True


# ---------------------------------------------------------------- the work of one batch (in a worker)

_worker_tokenizer: Optional[Tokenizer] = None
_worker_eot: Optional[int] = None
_worker_dtype: Optional[np.dtype] = None


def _init_worker(tokenizer_meta: dict, eot: Optional[int], dtype: str) -> None:
    global _worker_tokenizer, _worker_eot, _worker_dtype
    _worker_tokenizer = tokenizer_from_meta(tokenizer_meta)
    _worker_eot, _worker_dtype = eot, np.dtype(dtype)


def _init_pool_worker(tokenizer_meta: dict, eot: Optional[int], dtype: str) -> None:
    # The main process stops the work (Ctrl-C, SIGTERM) and ends the pool, whose terminate() sends SIGTERM: a
    # worker neither turns Ctrl-C into a traceback of its own nor runs the handler it inherited from the main process
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    _init_worker(tokenizer_meta, eot, dtype)


def _encode_batch(batch: Batch) -> dict[str, np.ndarray]:
    """Token arrays per split for one batch, in the order of its pieces; `eot` after each whole piece."""
    ids: dict[str, list[int]] = {}
    for split, text, eot_after in batch.pieces:
        out = ids.setdefault(split, [])
        out.extend(_worker_tokenizer.encode(text))
        if eot_after and _worker_eot is not None:
            out.append(_worker_eot)
    return {split: np.asarray(v, dtype=_worker_dtype) for split, v in ids.items()}


def encode_batches(
    batches: Iterable[Batch], tokenizer: Tokenizer, eot: Optional[int], dtype: np.dtype, num_proc: int
) -> Iterator[tuple[Batch, dict[str, np.ndarray]]]:
    """(batch, tokens per split) for each batch, in order. num_proc 1 works in this process."""
    meta = tokenizer.to_meta()
    if num_proc <= 1:
        _init_worker(meta, eot, dtype.name)
        for batch in batches:
            yield batch, _encode_batch(batch)
        return
    # forkserver where there is one, else spawn: never fork. A process that runs threads (a notebook, a test session,
    # TensorBoard's writer) can be forked while one of them holds a lock, and the worker then waits on it forever
    # (seen here: a prepare --num_proc 2 run in a test session hung). Workers import only this module and tiktoken.
    methods = multiprocessing.get_all_start_methods()
    ctx = multiprocessing.get_context("forkserver" if "forkserver" in methods else "spawn")
    with ctx.Pool(num_proc, initializer=_init_pool_worker, initargs=(meta, eot, dtype.name)) as pool:
        in_flight: collections.deque = collections.deque()
        for batch in batches:
            in_flight.append((batch, pool.apply_async(_encode_batch, (batch,))))
            if len(in_flight) >= 2 * num_proc:  # bounded: wait for the oldest before reading more
                done, result = in_flight.popleft()
                yield done, result.get()
        while in_flight:
            done, result = in_flight.popleft()
            yield done, result.get()
