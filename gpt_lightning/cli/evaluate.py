"""`python -m gpt_lightning evaluate`: zero-shot benchmark scores of a checkpoint.

    python -m gpt_lightning evaluate --ckpt_path out/gpt2/version_0/checkpoints/last.ckpt --tasks hellaswag --limit 1000
    python -m gpt_lightning evaluate --ckpt_path gpt2 --tasks hellaswag --protocol lm-eval   # OpenAI's GPT-2 124M
    python -m gpt_lightning evaluate --ckpt_path gpt2 --tasks hellaswag,lambada_openai,arc_easy,piqa,winogrande

HellaSwag is built in (evaluation/hellaswag.py, both published protocols); every other task runs through
lm-evaluation-harness's own task definitions with our model as its backend (evaluation/lm_eval_backend.py).

The table goes to stdout, progress and model details to stderr. docs/evaluation.md says what the numbers mean.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Literal, Optional

from gpt_lightning.errors import UserError
from gpt_lightning.hardware import enable_tf32, resolve_device
from gpt_lightning.weights.load import load_checkpoint_model

BUILT_IN = ("hellaswag",)
# the zero-shot tasks GPT-2 papers and reproductions report (docs/evaluation.md)
GPT2_SUITE = "hellaswag,lambada_openai,arc_easy,piqa,winogrande"
EVAL_EXTRA = "pip install 'gpt_lightning[eval]'"


def evaluate(
    ckpt_path: Optional[str] = None,
    tasks: str = "hellaswag",
    protocol: Literal["completion", "lm-eval"] = "completion",
    limit: Optional[int] = None,
    device: Literal["auto", "cpu", "cuda"] = "auto",
    batch_size: int = 8,
    hellaswag_path: Optional[str] = None,
    include_path: Optional[str] = None,
    output_path: Optional[str] = None,
    list_tasks: bool = False,
    progress: bool = True,
) -> list[dict]:
    """Score a model on zero-shot benchmarks: HellaSwag built in, any lm-evaluation-harness task with the eval extra.

    Args:
        ckpt_path: anything `generate` loads: a .ckpt written by `fit` (a folder means its last.ckpt), nanoGPT's
            ckpt.pt, a Hugging Face GPT-2 folder or .safetensors file, or a hub name (gpt2, gpt2-medium, ...).
        tasks: comma-separated tasks: `hellaswag` is built in (on the local validation file); any other name is an
            lm-evaluation-harness task (or group), run by the harness's own task code with this model (needs
            `pip install gpt_lightning[eval]`). `--tasks` with no value lists them.
        protocol: how the built-in HellaSwag is scored: `completion` (build-nanogpt and llm.c's, GPT-2 124M
            acc_norm 0.2955) or `lm-eval` (lm-evaluation-harness's hellaswag task, GPT-2 124M acc_norm 0.3114).
        limit: score the first N examples of each task only (None: all; HellaSwag has 10,042).
        device: auto picks the GPU where there is one.
        batch_size: HellaSwag examples per forward pass (4 rows each); harness requests per forward pass.
        hellaswag_path: the HellaSwag validation file (hellaswag_val.jsonl); default
            data/hellaswag/hellaswag_val.jsonl, downloaded there when missing and the network allows.
        include_path: a folder of lm-evaluation-harness task YAMLs to add to its tasks (as lm_eval's own
            --include_path).
        output_path: write every result to this JSON file: the harness's full results (configs, versions,
            per-sample answers) and the built-in tasks' rows under "built_in".
        list_tasks: list the tasks this can run, and exit.
        progress: show progress bars.

    Returns:
        One dict per task: task, examples and its metrics (acc, acc_norm, ...); a built-in task also its protocol
            and seconds.
    """
    names = [t.strip() for t in tasks.split(",") if t.strip()]
    if list_tasks or not names:
        print(task_listing(include_path))
        return []
    if ckpt_path is None:
        raise UserError("Pass the model to evaluate with --ckpt_path (a .ckpt, nanoGPT's ckpt.pt, or gpt2).")
    if limit is not None and limit < 1:
        raise UserError(f"--limit must be at least 1 (or left out for every example), got {limit}.")
    if batch_size < 1:
        raise UserError(f"--batch_size must be at least 1, got {batch_size}.")
    built_in = [t for t in names if t in BUILT_IN]
    harness = [t for t in names if t not in BUILT_IN]
    task_manager = harness_task_manager(harness, include_path) if harness else None
    from gpt_lightning.evaluation import hellaswag

    # `~` expanded once, as for every path option (a hub name such as gpt2 is left as it is)
    ckpt_path, hellaswag_path = (os.path.expanduser(p) if p else p for p in (ckpt_path, hellaswag_path))
    dev = resolve_device(device)
    enable_tf32(dev)
    model, tokenizer = load_checkpoint_model(ckpt_path, dev)
    reason = hellaswag.unsupported_tokenizer(tokenizer.to_meta() if tokenizer is not None else None)
    if reason and built_in:  # (the harness's backend says why it cannot run a model)
        raise UserError(f"Cannot evaluate {ckpt_path}: {reason}.")
    cfg = model.config
    print(
        f"{ckpt_path}: {cfg.n_layer}x{cfg.n_embd} GPT ({model.get_num_params() / 1e6:.2f}M parameters), "
        f"block {cfg.block_size}, on {dev}",
        file=sys.stderr,
    )
    rows = []
    for name in built_in:  # HellaSwag, the one built-in task
        path = hellaswag.locate(hellaswag_path)
        examples = hellaswag.encode(tokenizer, hellaswag.read_examples(path, limit, protocol), protocol)
        start = time.perf_counter()
        scores = hellaswag.score(model, examples, batch_size=batch_size, progress=progress)
        seconds = time.perf_counter() - start
        correct, correct_norm, n = hellaswag.counts(scores)
        rows.append(
            dict(task=name, protocol=protocol, examples=n, acc=correct / n, acc_norm=correct_norm / n, seconds=seconds)
        )
    if rows:
        print(format_table(rows))
        print(hellaswag.PROTOCOL_NOTES[protocol])
    results = None
    if harness:
        start = time.perf_counter()
        results = run_harness(model, tokenizer, harness, task_manager, limit, batch_size, output_path is not None)
        seconds = time.perf_counter() - start
        harness_rows = harness_summary(results)
        for row in harness_rows:
            print(format_metrics(row))
        print(f"lm-evaluation-harness {results.get('lm_eval_version', '')}: {len(harness)} task(s) in {seconds:.1f}s")
        rows += harness_rows
    if output_path is not None:
        write_results(Path(output_path), results, [r for r in rows if r["task"] in BUILT_IN])
    return rows


def harness_task_manager(names: list[str], include_path: Optional[str]):
    """lm-evaluation-harness's TaskManager (with include_path's YAMLs), once every name is known to it."""
    try:
        from lm_eval.tasks import TaskManager
    except ImportError:
        raise UserError(
            f"Task(s) {', '.join(names)} are not built in (built in: {', '.join(BUILT_IN)}); other tasks run through "
            f"lm-evaluation-harness's task definitions: {EVAL_EXTRA}."
        ) from None
    if include_path is not None and not Path(include_path).is_dir():
        raise UserError(f"--include_path {include_path} is not a folder; pass a folder of lm-eval task YAMLs.")
    manager = TaskManager(include_path=include_path)
    unknown = [t for t in names if t not in manager.all_tasks]
    if unknown:
        raise UserError(
            f"Unknown task(s) {', '.join(unknown)}: neither built in ({', '.join(BUILT_IN)}) nor an lm-evaluation-"
            "harness task; list what can run with --list_tasks (add task YAMLs with --include_path)."
        )
    return manager


def run_harness(model, tokenizer, names, task_manager, limit, batch_size, log_samples: bool) -> dict:
    """The harness's simple_evaluate on our model (evaluation/lm_eval_backend.py), zero-shot as GPT-2 is scored."""
    from lm_eval import simple_evaluate

    from gpt_lightning.evaluation.lm_eval_backend import GPTLightningLM

    lm = GPTLightningLM(model=model, tokenizer=tokenizer, batch_size=batch_size)
    try:
        return simple_evaluate(model=lm, tasks=names, task_manager=task_manager, limit=limit, log_samples=log_samples)
    except ConnectionError as e:  # datasets' way of saying the hub is out of reach (offline, or no network)
        raise UserError(
            f"lm-evaluation-harness could not fetch a task's data ({e}); its tasks download their data sets from the "
            "Hugging Face hub once (then cached), so run where the hub is reachable, or use a local task YAML with "
            "--include_path."
        ) from e


def harness_summary(results: dict) -> list[dict]:
    """One row per task (and group) the harness reports: its metrics under their plain names, with the number of
    examples (`"acc,none"` becomes `acc`; a filter other than `none` stays in the name)."""
    rows = []
    for task, metrics in results["results"].items():
        row = dict(task=task, examples=(results.get("n-samples", {}).get(task) or {}).get("effective"))
        for key, value in metrics.items():
            metric, _, filt = key.partition(",")
            if isinstance(value, (int, float)) and filt and metric != "alias":
                row[metric if filt == "none" else f"{metric}[{filt}]"] = value
        rows.append(row)
    return rows


def format_metrics(row: dict) -> str:
    """One line: task, examples, then `metric value (± stderr)` for each metric."""
    parts = []
    for key, value in row.items():
        if key in ("task", "examples") or "_stderr" in key:
            continue
        stderr = row.get(key.replace("[", "_stderr[") if "[" in key else f"{key}_stderr")
        parts.append(f"{key} {value:.4f}" + (f" (± {stderr:.4f})" if isinstance(stderr, float) else ""))
    examples = row["examples"] if row["examples"] is not None else "-"
    return f"{row['task']:<12} {examples:>8}  " + ", ".join(parts)


def task_listing(include_path: Optional[str]) -> str:
    lines = [f"built in: {', '.join(BUILT_IN)} (--protocol completion or lm-eval)"]
    try:
        from lm_eval.tasks import TaskManager
    except ImportError:
        lines.append(f"any lm-evaluation-harness task (e.g. {GPT2_SUITE}) after {EVAL_EXTRA}")
        return "\n".join(lines)
    names = sorted(TaskManager(include_path=include_path).all_tasks)
    lines.append(f"lm-evaluation-harness tasks and groups ({len(names)}; e.g. --tasks {GPT2_SUITE}):")
    return "\n".join(lines + names)


def write_results(path: Path, results: Optional[dict], built_in: list[dict]) -> None:
    """The harness's results JSON (as its --output_path writes them), plus the built-in tasks' rows."""
    from gpt_lightning.files import atomic_write

    default = str
    if results is not None:
        from lm_eval.utils import handle_non_serializable as default
    data = {**(results or {}), "built_in": built_in}
    with atomic_write(path) as f:
        f.write(json.dumps(data, indent=2, default=default, ensure_ascii=False).encode("utf-8"))
    print(f"results written to {path}", file=sys.stderr)


def format_table(rows: list[dict]) -> str:
    """The built-in tasks' table: task, examples, acc, acc_norm, time."""
    lines = [f"{'task':<12} {'examples':>8} {'acc':>7} {'acc_norm':>8} {'time':>9}"]
    for r in rows:
        lines.append(f"{r['task']:<12} {r['examples']:>8} {r['acc']:>7.4f} {r['acc_norm']:>8.4f} {r['seconds']:>8.1f}s")
    return "\n".join(lines)


def main(args: list[str]) -> None:
    from jsonargparse import CLI

    # `--tasks` with no value, and `--list_tasks` alone, list the tasks (jsonargparse wants a value for each)
    flags = {"--tasks": "--list_tasks=true", "--list_tasks": "--list_tasks=true"}
    args = [
        flags[a] if a in flags and (i + 1 == len(args) or args[i + 1].startswith("-")) else a
        for i, a in enumerate(args)
    ]
    CLI(evaluate, args=args, as_positional=False, prog="python -m gpt_lightning evaluate", exit_on_error=False)
