"""`python -m gpt_lightning evaluate`: zero-shot benchmark scores of a checkpoint (HellaSwag).

    python -m gpt_lightning evaluate --ckpt_path out/gpt2/checkpoints/last.ckpt --tasks hellaswag --limit 1000
    python -m gpt_lightning evaluate --ckpt_path gpt2 --tasks hellaswag     # OpenAI's GPT-2 124M

The table goes to stdout, progress and model details to stderr. docs/evaluation.md says what the numbers mean.
"""

from __future__ import annotations

import os
import sys
import time
from typing import Literal, Optional

from gpt_lightning.errors import UserError
from gpt_lightning.hardware import enable_tf32, resolve_device
from gpt_lightning.weights.load import load_checkpoint_model

TASKS = ("hellaswag",)


def evaluate(
    ckpt_path: str,
    tasks: str = "hellaswag",
    limit: Optional[int] = None,
    device: Literal["auto", "cpu", "cuda"] = "auto",
    batch_size: int = 8,
    hellaswag_path: Optional[str] = None,
    progress: bool = True,
) -> list[dict]:
    """Score a model on zero-shot multiple-choice benchmarks and print a table: task, examples, acc, acc_norm, time.

    Args:
        ckpt_path: anything `generate` loads: a .ckpt written by `fit` (a folder means its last.ckpt), nanoGPT's
            ckpt.pt, a Hugging Face GPT-2 folder or .safetensors file, or a hub name (gpt2, gpt2-medium, ...).
        tasks: comma-separated benchmarks; only `hellaswag` so far.
        limit: score the first N examples of each task only (None: all; HellaSwag has 10,042).
        device: auto picks the GPU where there is one.
        batch_size: examples per forward pass (4 x batch_size rows, one per ending).
        hellaswag_path: the HellaSwag validation file (hellaswag_val.jsonl); default
            data/hellaswag/hellaswag_val.jsonl, downloaded there when missing and the network allows.
        progress: show a progress bar.

    Returns:
        One dict per task: task, examples, acc, acc_norm, seconds.
    """
    names = [t.strip() for t in tasks.split(",") if t.strip()]
    unknown = [t for t in names if t not in TASKS]
    if unknown or not names:
        raise UserError(f"Unknown task(s) {', '.join(unknown) or repr(tasks)}; choose from: {', '.join(TASKS)}.")
    if limit is not None and limit < 1:
        raise UserError(f"--limit must be at least 1 (or left out for every example), got {limit}.")
    if batch_size < 1:
        raise UserError(f"--batch_size must be at least 1, got {batch_size}.")
    from gpt_lightning.evaluation import hellaswag

    # `~` expanded once, as for every path option (a hub name such as gpt2 is left as it is)
    ckpt_path, hellaswag_path = (os.path.expanduser(p) if p else p for p in (ckpt_path, hellaswag_path))
    dev = resolve_device(device)
    enable_tf32(dev)
    model, tokenizer = load_checkpoint_model(ckpt_path, dev)
    reason = hellaswag.unsupported_tokenizer(tokenizer.to_meta() if tokenizer is not None else None)
    if reason:
        raise UserError(f"Cannot evaluate {ckpt_path}: {reason}.")
    cfg = model.config
    print(
        f"{ckpt_path}: {cfg.n_layer}x{cfg.n_embd} GPT ({model.get_num_params() / 1e6:.2f}M parameters), "
        f"block {cfg.block_size}, on {dev}",
        file=sys.stderr,
    )
    rows = []
    for name in names:  # one task so far; each gets its own row
        path = hellaswag.locate(hellaswag_path)
        examples = hellaswag.encode(tokenizer, hellaswag.read_examples(path, limit))
        start = time.perf_counter()
        scores = hellaswag.score(model, examples, batch_size=batch_size, progress=progress)
        seconds = time.perf_counter() - start
        correct, correct_norm, n = hellaswag.counts(scores)
        rows.append(dict(task=name, examples=n, acc=correct / n, acc_norm=correct_norm / n, seconds=seconds))
    print(format_table(rows))
    print("acc: highest sum of the ending's token log-probabilities; acc_norm: highest mean per ending token")
    return rows


def format_table(rows: list[dict]) -> str:
    lines = [f"{'task':<12} {'examples':>8} {'acc':>7} {'acc_norm':>8} {'time':>9}"]
    for r in rows:
        lines.append(f"{r['task']:<12} {r['examples']:>8} {r['acc']:>7.4f} {r['acc_norm']:>8.4f} {r['seconds']:>8.1f}s")
    return "\n".join(lines)


def main(args: list[str]) -> None:
    from jsonargparse import CLI

    CLI(evaluate, args=args, as_positional=False, prog="python -m gpt_lightning evaluate", exit_on_error=False)
