"""HellaSwag (Zellers et al., 2019): pick the most likely of 4 endings of a short everyday scene, zero-shot.

The data is the validation split of the original release, a JSON Lines file of 10,042 examples, each with
`ctx` (the scene so far), `endings` (4 candidate continuations) and `label` (the index of the true one).

Scoring is the completion style of build-nanogpt and llm.c, the numbers GPT-2 reproductions report: each
ending, with a space in front, follows the context; the model scores it by the sum of its tokens'
log-probabilities. `acc` picks the ending with the highest sum, `acc_norm` the one with the highest sum per
ending token (the mean log-probability), which does not favour short endings. (lm-evaluation-harness's
acc_norm divides by the ending's length in bytes instead, and reformats the text first: its numbers differ.)

Nothing here imports Lightning: `evaluate` (cli/evaluate.py) and the training-loop callback (train/hellaswag.py)
both call score().
"""

from __future__ import annotations

import contextlib
import json
import sys
import urllib.request
from collections.abc import Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Union

import torch
from torch.nn import functional as F

from gpt_lightning.errors import UserError
from gpt_lightning.files import atomic_write
from gpt_lightning.model import GPT
from gpt_lightning.tokenizer import Tokenizer

# The original release (github.com/rowanz/hellaswag). No sha256 of this file is published anywhere we could find,
# so a download is checked by its content instead: 10,042 well-formed examples. (The repository was blocked by a
# DMCA notice in September 2026, after which this URL answers 404; the file then has to be put in place by hand.)
HELLASWAG_URL = "https://raw.githubusercontent.com/rowanz/hellaswag/master/data/hellaswag_val.jsonl"
HELLASWAG_VAL_EXAMPLES = 10_042
# Where the file is looked for, and a download kept, relative to the working directory (as data/tinyshakespeare.txt).
HELLASWAG_LOCAL = Path("data") / "hellaswag" / "hellaswag_val.jsonl"
NUM_ENDINGS = 4


@dataclass(frozen=True)
class Example:
    context: str
    endings: tuple[str, ...]  # NUM_ENDINGS of them
    label: int  # index of the true ending


def parse_example(line: str, where: str) -> Example:
    """One JSON line of the HellaSwag file; `where` ("FILE, line N") names it in the error."""
    try:
        record = json.loads(line)
    except json.JSONDecodeError as e:
        raise UserError(f"{where} is not valid JSON ({e}); use the original hellaswag_val.jsonl.") from e
    ctx = record.get("ctx") if isinstance(record, dict) else None
    endings = record.get("endings") if isinstance(record, dict) else None
    label = record.get("label") if isinstance(record, dict) else None
    if isinstance(label, str) and label.isdigit():
        label = int(label)  # the Hugging Face copy (Rowan/hellaswag) stores labels as strings
    ok = (
        isinstance(ctx, str)
        and isinstance(endings, list)
        and len(endings) == NUM_ENDINGS
        and all(isinstance(e, str) for e in endings)
        and isinstance(label, int)
        and 0 <= label < NUM_ENDINGS
    )
    if not ok:
        raise UserError(
            f"{where} is not a HellaSwag example (it needs a string 'ctx', a list of {NUM_ENDINGS} string "
            "'endings' and a 'label' from 0 to 3); use the original hellaswag_val.jsonl."
        )
    return Example(ctx, tuple(endings), label)


def parse_examples(lines: Sequence[str], source: str, limit: Optional[int] = None) -> list[Example]:
    examples = []
    for lineno, line in enumerate(lines, 1):
        if limit is not None and len(examples) >= limit:
            break
        if line.strip():
            examples.append(parse_example(line, f"{source}, line {lineno}"))
    return examples


def read_examples(path: Union[str, Path], limit: Optional[int] = None) -> list[Example]:
    """The first `limit` examples (all when None) of a HellaSwag JSON Lines file, in file order."""
    path = Path(path)
    try:
        with open(path, encoding="utf-8") as f:
            examples = parse_examples(f, str(path), limit)
    except (OSError, UnicodeDecodeError) as e:
        raise UserError(f"Cannot read {path} ({type(e).__name__}: {e}); pass a readable hellaswag_val.jsonl.") from e
    if not examples:
        raise UserError(f"{path} holds no examples; pass the original hellaswag_val.jsonl.")
    return examples


def fetch(dest: Path = HELLASWAG_LOCAL, url: str = HELLASWAG_URL, timeout: float = 30.0) -> Path:
    """Download the validation file to dest, refusing it unless it holds 10,042 well-formed examples (no sha256
    is published to pin); the file appears atomically, whole or not at all. Raises OSError when offline."""
    with urllib.request.urlopen(url, timeout=timeout) as response:
        data = response.read()
    try:
        lines = data.decode("utf-8").splitlines()
    except UnicodeDecodeError as e:
        raise UserError(f"The file at {url} is not UTF-8 text; it was not saved.") from e
    count = len(parse_examples(lines, url))
    if count != HELLASWAG_VAL_EXAMPLES:
        raise UserError(
            f"The file at {url} holds {count} examples, not HellaSwag validation's {HELLASWAG_VAL_EXAMPLES:,}; "
            "it was not saved."
        )
    with atomic_write(dest) as f:
        f.write(data)
    return dest


def locate(path: Optional[Union[str, Path]] = None, option: str = "--hellaswag_path") -> Path:
    """The HellaSwag validation file: `path` when given, else data/hellaswag/hellaswag_val.jsonl, downloaded
    there first when missing. Raises UserError saying where to put it, or which `option` passes it."""
    if path is not None:
        path = Path(path).expanduser()
        if path.is_dir():
            raise UserError(f"HellaSwag file {path} is a folder; pass the path of hellaswag_val.jsonl with {option}.")
        if not path.is_file():
            raise UserError(
                f"HellaSwag file {path} does not exist; pass the path of hellaswag_val.jsonl with {option}."
            )
        return path
    if HELLASWAG_LOCAL.is_file():
        return HELLASWAG_LOCAL
    try:
        print(f"Downloading HellaSwag's validation set from {HELLASWAG_URL}", file=sys.stderr)
        return fetch(HELLASWAG_LOCAL, HELLASWAG_URL)
    except OSError as e:  # offline, DNS, refused, timeout, 404 (URLError and HTTPError are OSErrors)
        reason = getattr(e, "reason", e)
    raise UserError(
        f"HellaSwag's validation file is not at {HELLASWAG_LOCAL.resolve()} and the download failed ({reason}); "
        f"put a copy of hellaswag_val.jsonl ({HELLASWAG_VAL_EXAMPLES:,} lines with ctx, endings, label) there, or "
        f"pass its path with {option}."
    )


# ---------------------------------------------------------------- scoring


def unsupported_tokenizer(tokenizer_meta: Optional[dict]) -> Optional[str]:
    """Why a model with this tokenizer cannot be scored on HellaSwag, or None when it can (GPT-2's BPE)."""
    kind = (tokenizer_meta or {}).get("kind")
    if kind == "gpt2":
        return None
    if kind == "char":
        return (
            "HellaSwag needs a GPT-2-BPE model: a char model knows only the characters of its training corpus, "
            "so it cannot read HellaSwag's English text, and its scores would not compare with GPT-2's"
        )
    return (
        "HellaSwag needs a GPT-2-BPE model, and this checkpoint does not say which tokenizer it was trained with "
        "(train it with `fit` on data prepared with --tokenizer gpt2)"
    )


@dataclass(frozen=True)
class EncodedExample:
    context: list[int]
    endings: tuple[list[int], ...]  # each ending's tokens, encoded with a space in front
    label: int


def encode(tokenizer: Tokenizer, examples: Sequence[Example]) -> list[EncodedExample]:
    """Token ids of each context and of each " " + ending. The context and the ending are encoded apart, as
    build-nanogpt does, so every candidate shares the same context tokens. An empty context becomes
    <|endoftext|>, so that the ending's first token is predicted from something."""
    texts = [t for ex in examples for t in (ex.context, *(" " + e for e in ex.endings))]
    ids = tokenizer.encode_batch(texts) if hasattr(tokenizer, "encode_batch") else [tokenizer.encode(t) for t in texts]
    eot = getattr(tokenizer, "eot_token", 0)
    out = []
    for i, ex in enumerate(examples):
        group = ids[i * (NUM_ENDINGS + 1) : (i + 1) * (NUM_ENDINGS + 1)]
        out.append(EncodedExample(group[0] or [eot], tuple(group[1:]), ex.label))
    return out


@dataclass(frozen=True)
class ExampleScore:
    logprobs: tuple[float, ...]  # per ending: the sum of its tokens' log-probabilities
    num_tokens: tuple[int, ...]  # per ending: how many tokens were scored
    label: int

    @property
    def pred(self) -> int:
        return max(range(len(self.logprobs)), key=lambda i: self.logprobs[i])  # first one on a tie

    @property
    def pred_norm(self) -> int:
        means = [lp / max(n, 1) for lp, n in zip(self.logprobs, self.num_tokens)]
        return max(range(len(means)), key=lambda i: means[i])


def window(context: list[int], ending: list[int], block_size: int) -> tuple[list[int], list[int]]:
    """Model input and targets for one candidate: the last block_size + 1 tokens of context + ending (a longer
    context is cropped from the left), the input without its last token, the targets without its first; only
    the ending's tokens are targets, the rest are -1. An ending longer than block_size keeps its last
    block_size tokens."""
    row = (context + ending)[-(block_size + 1) :]
    inputs, targets = row[:-1], row[1:]
    scored = min(len(ending), len(targets))
    return inputs, [-1] * (len(targets) - scored) + targets[len(targets) - scored :]


@torch.no_grad()
def score(
    model: GPT,
    examples: Sequence[EncodedExample],
    batch_size: int = 8,
    progress: bool = True,
    forward_context: Callable[[], AbstractContextManager] = contextlib.nullcontext,
) -> list[ExampleScore]:
    """Score every ending of every example; the results come back in the order of `examples`.

    batch_size examples (4 x batch_size rows) go through the model at once, right-padded to the longest row:
    attention is causal, so padding after a row's end changes nothing before it, and padded positions are no
    targets. Examples are batched longest first, which keeps the padding small and shows a lack of memory at
    the first batch. forward_context: e.g. autocast (the Trainer's precision, in the training loop).
    """
    from tqdm.auto import tqdm

    if batch_size < 1:
        raise UserError(f"The batch size must be at least 1, got {batch_size}.")
    device = next(model.parameters()).device
    block_size = model.config.block_size
    was_training = model.training
    model.eval()
    longest = [max(len(ex.context) + len(e) for e in ex.endings) for ex in examples]
    order = sorted(range(len(examples)), key=lambda i: -longest[i])
    results: list[Optional[ExampleScore]] = [None] * len(examples)
    bar = tqdm(total=len(examples), desc="hellaswag", unit="ex", disable=not progress, file=sys.stderr)
    try:
        for start in range(0, len(order), batch_size):
            chunk = order[start : start + batch_size]
            rows = [window(examples[i].context, e, block_size) for i in chunk for e in examples[i].endings]
            length = max(len(inputs) for inputs, _ in rows)
            idx = torch.zeros((len(rows), length), dtype=torch.long)  # (R, T): R = 4 x examples in the batch
            targets = torch.full((len(rows), length), -1, dtype=torch.long)  # (R, T): -1 is not scored
            for r, (inputs, tgt) in enumerate(rows):
                idx[r, : len(inputs)] = torch.tensor(inputs)
                targets[r, : len(tgt)] = torch.tensor(tgt)
            idx, targets = idx.to(device), targets.to(device)
            with forward_context():
                # forward, not __call__: a model compiled in place would recompile for every new shape; with
                # targets the model returns logits at every position (its mean loss is not used)
                logits, _ = model.forward(idx, targets)  # (R, T, vocab)
            token_logprobs = -F.cross_entropy(
                logits.float().flatten(0, 1), targets.flatten(), ignore_index=-1, reduction="none"
            ).view(targets.shape)  # (R, T), 0 where not scored
            sums = token_logprobs.double().sum(dim=1).view(len(chunk), NUM_ENDINGS).tolist()
            counts = (targets != -1).sum(dim=1).view(len(chunk), NUM_ENDINGS).tolist()
            for i, s, n in zip(chunk, sums, counts):
                results[i] = ExampleScore(tuple(s), tuple(n), examples[i].label)
            bar.update(len(chunk))
    finally:
        bar.close()
        model.train(was_training)
    return results  # type: ignore[return-value]


def shard(items: Sequence, rank: int, world_size: int) -> list:
    """Rank `rank`'s share of items when world_size processes split them: every world_size-th item, so the
    shares differ by at most one and together hold every item exactly once."""
    return list(items[rank::world_size])


def counts(scores: Sequence[ExampleScore]) -> tuple[int, int, int]:
    """(correct by acc, correct by acc_norm, examples): integers, which add up exactly over shards."""
    return (
        sum(s.pred == s.label for s in scores),
        sum(s.pred_norm == s.label for s in scores),
        len(scores),
    )
