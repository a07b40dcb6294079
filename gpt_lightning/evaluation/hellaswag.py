"""HellaSwag (Zellers et al., 2019): pick the most likely of 4 endings of a short everyday scene, zero-shot.

The data is the validation split of the original release, a JSON Lines file of 10,042 examples, each with
`ctx` (the scene so far), `endings` (4 candidate continuations) and `label` (the index of the true one).

Two published protocols (PROTOCOLS), which give GPT-2 124M two different acc_norm (0.2955 and 0.3114):

- `completion`, the style of build-nanogpt and llm.c, the numbers GPT-2 reproductions report: each ending, with a
  space in front, follows the raw `ctx`; the model scores it by the sum of its tokens' log-probabilities. `acc`
  picks the ending with the highest sum, `acc_norm` the one with the highest sum per ending token (the mean
  log-probability), which does not favour short endings.
- `lm-eval`, lm-evaluation-harness's `hellaswag` task: the context is `activity_label: ctx_a Ctx_b` and the
  context and endings lose WikiHow's bracket markers (preprocess_lm_eval, a copy of the harness's utils.py);
  context + " " + ending is tokenized whole and split where the context's tokens end (the harness's
  TemplateLM._encode_pair), and `acc_norm` divides the sum by the ending's length in characters.

Nothing here imports Lightning or lm-eval: `evaluate` (cli/evaluate.py) and the training-loop callback
(train/hellaswag.py) both call score(), which scores through loglikelihood.py as the lm-eval backend does.
"""

from __future__ import annotations

import contextlib
import json
import re
import sys
import urllib.request
from collections.abc import Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Literal, Optional, Union

import torch

from gpt_lightning.errors import UserError
from gpt_lightning.evaluation.loglikelihood import score_rows
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
Protocol = Literal["completion", "lm-eval"]
PROTOCOLS: tuple[str, ...] = ("completion", "lm-eval")
# what each protocol's acc and acc_norm are, printed under the numbers
PROTOCOL_NOTES = {
    "completion": "hellaswag protocol completion (build-nanogpt, llm.c; raw ctx): acc = highest sum of the ending's "
    "log-probabilities, acc_norm = highest mean per token",
    "lm-eval": "hellaswag protocol lm-eval (lm-evaluation-harness's hellaswag task): acc = highest sum of the ending's "
    "log-probabilities, acc_norm = highest sum per character",
}


@dataclass(frozen=True)
class Example:
    context: str
    endings: tuple[str, ...]  # NUM_ENDINGS of them
    label: int  # index of the true ending


def preprocess_lm_eval(text: str) -> str:
    """lm-evaluation-harness's text clean-up for HellaSwag (lm_eval/tasks/hellaswag/utils.py, `preprocess`),
    character for character: WikiHow's " [title]" becomes ". ", other [bracketed] markers go, double spaces become
    one. (tests/unit/test_hellaswag_protocols.py checks it against the installed harness.)"""
    text = text.strip()
    # NOTE: Brackets are artifacts of the WikiHow dataset portion of HellaSwag.
    text = text.replace(" [title]", ". ")
    text = re.sub("\\[.*?\\]", "", text)
    text = text.replace("  ", " ")
    return text


def lm_eval_example(record: dict, label: int, where: str) -> Example:
    """The harness's `process_docs` of one record: query `activity_label: ctx_a Ctx_b` and the endings, cleaned."""
    fields = ("activity_label", "ctx_a", "ctx_b")
    if not all(isinstance(record.get(f), str) for f in fields):
        raise UserError(
            f"{where} lacks the string fields {', '.join(fields)} that --protocol lm-eval reads; use the original "
            "hellaswag_val.jsonl, or --protocol completion."
        )
    ctx = record["ctx_a"] + " " + record["ctx_b"].capitalize()
    query = preprocess_lm_eval(record["activity_label"] + ": " + ctx)
    return Example(query, tuple(preprocess_lm_eval(e) for e in record["endings"]), label)


def parse_example(line: str, where: str, protocol: Protocol = "completion") -> Example:
    """One JSON line of the HellaSwag file, as `protocol` reads it; `where` ("FILE, line N") names it in the
    error."""
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
    if protocol == "lm-eval":
        return lm_eval_example(record, label, where)
    return Example(ctx, tuple(endings), label)


def parse_examples(
    lines: Sequence[str], source: str, limit: Optional[int] = None, protocol: Protocol = "completion"
) -> list[Example]:
    examples = []
    for lineno, line in enumerate(lines, 1):
        if limit is not None and len(examples) >= limit:
            break
        if line.strip():
            examples.append(parse_example(line, f"{source}, line {lineno}", protocol))
    return examples


def read_examples(
    path: Union[str, Path], limit: Optional[int] = None, protocol: Protocol = "completion"
) -> list[Example]:
    """The first `limit` examples (all when None) of a HellaSwag JSON Lines file, in file order, as `protocol`
    reads them (lm-eval: the harness's query and cleaned endings)."""
    check_protocol(protocol)
    path = Path(path)
    try:
        with open(path, encoding="utf-8") as f:
            examples = parse_examples(f, str(path), limit, protocol)
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


def check_protocol(protocol: str, option: str = "--protocol") -> None:
    if protocol not in PROTOCOLS:
        raise UserError(f"Unknown HellaSwag protocol {protocol!r}; {option} takes {' or '.join(PROTOCOLS)}.")


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
    # lm-eval protocol: each ending's length in characters, acc_norm's divisor (None: the scored tokens)
    char_lengths: Optional[tuple[int, ...]] = None


def encode(
    tokenizer: Tokenizer, examples: Sequence[Example], protocol: Protocol = "completion"
) -> list[EncodedExample]:
    """Token ids of each context and of each " " + ending.

    completion: the context and the ending are encoded apart, as build-nanogpt does. An empty context becomes
    <|endoftext|>, so that the ending's first token is predicted from something.
    lm-eval: as the harness's TemplateLM.loglikelihood: context + " " + ending is encoded whole and the ending is
    what follows the context's own tokens; an empty context becomes <|endoftext|>."""
    check_protocol(protocol)
    eot = getattr(tokenizer, "eot_token", 0)
    if protocol == "lm-eval":
        return [encode_lm_eval(tokenizer, ex, eot) for ex in examples]
    texts = [t for ex in examples for t in (ex.context, *(" " + e for e in ex.endings))]
    ids = tokenizer.encode_batch(texts) if hasattr(tokenizer, "encode_batch") else [tokenizer.encode(t) for t in texts]
    out = []
    for i, ex in enumerate(examples):
        group = ids[i * (NUM_ENDINGS + 1) : (i + 1) * (NUM_ENDINGS + 1)]
        out.append(EncodedExample(group[0] or [eot], tuple(group[1:]), ex.label))
    return out


def encode_lm_eval(tokenizer: Tokenizer, ex: Example, eot: int) -> EncodedExample:
    """One example tokenized as lm-evaluation-harness's TemplateLM.loglikelihood does (lm_eval/api/model.py)."""
    context, endings = ex.context, []
    context_ids = tokenizer.encode(context) if context else [eot]
    for ending in ex.endings:
        continuation = " " + ending
        if not context:
            endings.append(tokenizer.encode(continuation))  # after <|endoftext|>
            continue
        whole = tokenizer.encode(context + continuation)  # the context never ends in a space: preprocess strips
        endings.append(whole[len(context_ids) :])
    return EncodedExample(context_ids, tuple(endings), ex.label, tuple(len(e) for e in ex.endings))


@dataclass(frozen=True)
class ExampleScore:
    logprobs: tuple[float, ...]  # per ending: the sum of its tokens' log-probabilities
    num_tokens: tuple[int, ...]  # per ending: how many tokens were scored
    label: int
    char_lengths: Optional[tuple[int, ...]] = None  # lm-eval protocol: acc_norm divides by these instead

    @property
    def pred(self) -> int:
        return max(range(len(self.logprobs)), key=lambda i: self.logprobs[i])  # first one on a tie

    @property
    def pred_norm(self) -> int:
        lengths = self.char_lengths or self.num_tokens
        means = [lp / max(n, 1) for lp, n in zip(self.logprobs, lengths)]
        return max(range(len(means)), key=lambda i: means[i])


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
    was_training = model.training
    model.eval()
    longest = [max(len(ex.context) + len(e) for e in ex.endings) for ex in examples]
    order = sorted(range(len(examples)), key=lambda i: -longest[i])
    results: list[Optional[ExampleScore]] = [None] * len(examples)
    bar = tqdm(total=len(examples), desc="hellaswag", unit="ex", disable=not progress, file=sys.stderr)
    try:
        for start in range(0, len(order), batch_size):
            chunk = order[start : start + batch_size]
            requests = [(examples[i].context, e) for i in chunk for e in examples[i].endings]
            rows = score_rows(model, requests, forward_context)  # 4 per example
            for k, i in enumerate(chunk):
                group = rows[k * NUM_ENDINGS : (k + 1) * NUM_ENDINGS]
                results[i] = ExampleScore(
                    tuple(r.logprob for r in group),
                    tuple(r.num_tokens for r in group),
                    examples[i].label,
                    examples[i].char_lengths,
                )
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
