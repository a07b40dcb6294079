"""Optimizers (or samplers) side by side: several `fit` runs of one config, at the same time, under the same load.

    python -m gpt_lightning.benchmarks.optimizers --preset configs/shakespeare_char_cpu.yaml --out bench/opt \\
        --runs '{"adamw": [], "muon": ["--model.optimizer=muon"]}' --steps 2000 --val_every 100

Every run is the real CLI (`python -m gpt_lightning fit`) in a process of its own with one torch thread, all
started together, so that a shared machine slows them alike; the first run is the reference. Each run logs
val/loss every `val_every` optimizer steps and the seconds spent training so far (validation excluded) to a
CSV file. The table gives each run's final val loss and the first validation step (and training seconds) at
which it reached the reference's final val loss, as fractions of the reference's steps and seconds.
Results also go to OUT/results.json.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Optional

import lightning as L


class TrainingClock(L.Callback):
    """Logs `time/train_s`, the wall-clock seconds spent training (validation excluded), at each validation."""

    def __init__(self) -> None:
        self.elapsed, self.since = 0.0, None

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if self.since is None:
            self.since = time.perf_counter()

    def on_validation_start(self, trainer, pl_module) -> None:
        if self.since is not None:
            self.elapsed += time.perf_counter() - self.since
            self.since = None

    def on_validation_end(self, trainer, pl_module) -> None:
        if not trainer.sanity_checking:
            for logger in trainer.loggers:
                logger.log_metrics({"time/train_s": self.elapsed}, step=trainer.global_step)


def read_curve(metrics_csv: Path) -> dict[int, dict[str, float]]:
    """optimizer steps done -> {"val": val/loss, "s": time/train_s} from a CSVLogger metrics file."""
    curve: dict[int, dict[str, float]] = {}
    with open(metrics_csv) as f:
        for row in csv.DictReader(f):
            step = int(row["step"])
            if row.get("val/loss"):  # logged at the optimizer steps done, as every scalar
                curve.setdefault(step, {})["val"] = float(row["val/loss"])
            if row.get("time/train_s"):
                curve.setdefault(step, {})["s"] = float(row["time/train_s"])
    return {s: v for s, v in sorted(curve.items()) if "val" in v and "s" in v}


def reached(curve: dict[int, dict[str, float]], target: float) -> Optional[int]:
    """The first validated step whose val loss is at or below target."""
    return next((s for s, v in curve.items() if v["val"] <= target), None)


def compare(curves: dict[str, dict[int, dict[str, float]]]) -> list[dict]:
    names = list(curves)
    ref = curves[names[0]]
    ref_step = max(ref)
    target, ref_s = ref[ref_step]["val"], ref[ref_step]["s"]
    rows = []
    for name in names:
        curve = curves[name]
        last = max(curve)
        step = reached(curve, target)
        rows.append(
            {
                "run": name,
                "final_step": last,
                "final_val": curve[last]["val"],
                "s_per_step": curve[last]["s"] / last,
                "steps_to_ref": step,
                "steps_frac": step / ref_step if step is not None else None,
                "time_frac": curve[step]["s"] / ref_s if step is not None else None,
            }
        )
    return rows


def fraction(x: Optional[float]) -> str:
    return f"{x:.2f}" if x is not None else "not reached"


def table(rows: list[dict]) -> str:
    lines = [
        "| run | final val | s/step (rel.) | steps to reference's final val | fraction of steps | fraction of time |",
        "|---|---|---|---|---|---|",
    ]
    ref_sps = rows[0]["s_per_step"]
    for r in rows:
        lines.append(
            f"| {r['run']} | {r['final_val']:.4f} | {r['s_per_step'] / ref_sps:.2f} | {r['steps_to_ref'] or '-'} | "
            f"{fraction(r['steps_frac'])} | {fraction(r['time_frac'])} |"
        )
    return "\n".join(lines)


def main(
    preset: Path,
    out: Path,
    runs: dict[str, list[str]],
    steps: int = 2000,
    val_every: int = 100,
    args: Optional[list[str]] = None,
    threads: int = 1,
) -> None:
    """Run `fit` once per entry of `runs`, all at once, and compare their val-loss curves.

    Args:
        preset: the fit config every run starts from.
        out: folder for the runs' logs and checkpoints, and results.json.
        runs: run name -> extra fit arguments of that run; the first run is the reference.
        steps: optimizer steps of every run (also its lr_decay_steps).
        val_every: validate every this many optimizer steps.
        args: fit arguments common to all runs (e.g. --data.data_dir, --model.n_layer).
        threads: torch threads per run.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    repo = str(Path(__file__).resolve().parents[2])  # the runs use this checkout of gpt_lightning
    path = os.pathsep.join(p for p in (repo, os.environ.get("PYTHONPATH")) if p)
    env = {**os.environ, "PYTHONPATH": path, "OMP_NUM_THREADS": str(threads), "PYTHONUNBUFFERED": "1"}
    procs = {}
    for name, extra in runs.items():
        run_dir = out / name
        cmd = [
            sys.executable,
            "-m",
            "gpt_lightning",
            "fit",
            "--config",
            str(preset),
            "--trainer.max_steps",
            str(steps),
            "--model.lr_decay_steps",
            str(steps),
            "--val_every_n_steps",
            str(val_every),
            "--trainer.logger",
            json.dumps(
                {
                    "class_path": "lightning.pytorch.loggers.CSVLogger",
                    "init_args": {"save_dir": str(out), "name": name, "version": 0},
                }
            ),
            "--trainer.callbacks",
            json.dumps([{"class_path": "gpt_lightning.benchmarks.optimizers.TrainingClock"}]),
            "--trainer.enable_progress_bar",
            "false",
            "--checkpoint.dirpath",
            str(run_dir / "checkpoints"),
            "--last_checkpoint.every_n_train_steps",
            str(10 * steps),
            "--sample.max_new_tokens",
            "0",
            *(args or []),
            *extra,
        ]
        (out / f"{name}.cmd").write_text(" ".join(cmd) + "\n")
        log = open(out / f"{name}.log", "w")
        procs[name] = (subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env), log)
    failed = []
    for name, (proc, log) in procs.items():
        if proc.wait() != 0:
            failed.append(name)
        log.close()
    if failed:
        sys.exit(f"error: run(s) {', '.join(failed)} failed; see {out}/NAME.log.")
    curves = {name: read_curve(out / name / "version_0" / "metrics.csv") for name in runs}
    rows = compare(curves)
    (out / "results.json").write_text(json.dumps({"rows": rows, "curves": curves}, indent=1))
    print(table(rows))


if __name__ == "__main__":
    from jsonargparse import CLI

    CLI(main, as_positional=False)
