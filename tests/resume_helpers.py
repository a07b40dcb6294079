"""Shared by test_resume.py and test_errors.py: a tiny corpus, a tiny config, runs of the real CLI."""

from __future__ import annotations

import csv
import math
import os
import random
import sys
from pathlib import Path

import lightning as L
import yaml

REPO = Path(__file__).resolve().parents[1]
TESTS = Path(__file__).resolve().parent

# 2 layers, 32 wide, block 16, batch 4, accumulation 2: a step takes milliseconds on a CPU
TINY = {
    "seed_everything": 1337,
    "val_every_n_steps": 4,
    "trainer": {
        "max_steps": 8,
        "accumulate_grad_batches": 2,
        "precision": "32-true",
        "log_every_n_steps": 1,
        "enable_progress_bar": False,
        "enable_model_summary": False,
        "num_sanity_val_steps": 0,
        "deterministic": True,
        "logger": {
            "class_path": "lightning.pytorch.loggers.CSVLogger",
            "init_args": {"save_dir": "out", "name": "tiny"},
        },
    },
    "model": {
        "n_layer": 2,
        "n_head": 2,
        "n_embd": 32,
        "dropout": 0.0,
        "learning_rate": 1.0e-2,
        "min_lr": 1.0e-3,
        "warmup_steps": 2,
        "lr_decay_steps": 8,
        "compile": False,
    },
    "data": {"data_dir": "data/tiny", "block_size": 16, "batch_size": 4, "val_batches": 2},
    "checkpoint": {"dirpath": "out/ckpt"},
    "last_checkpoint": {"every_n_train_steps": 2},
    "sample": {"max_new_tokens": 0},
}


def synthetic_text(n_chars: int = 20000, seed: int = 0, alphabet: str = "abcdefghij .,\n") -> str:
    """Deterministic text with some structure (repeated words), so losses move."""
    rng = random.Random(seed)
    words = ["".join(rng.choice(alphabet[:10]) for _ in range(rng.randint(2, 6))) for _ in range(50)]
    out: list[str] = []
    while sum(map(len, out)) < n_chars:
        out.append(rng.choice(words) + rng.choice(alphabet[10:]))
    return "".join(out)[:n_chars]


def make_data(root: Path, name: str = "tiny", text: str | None = None, val_fraction: float = 0.1) -> Path:
    from gpt_lightning.data.prepare import prepare

    src = root / f"{name}.txt"
    src.write_text(synthetic_text() if text is None else text, encoding="utf-8")
    out = root / "data" / name
    prepare(str(src), "char", out, val_fraction=val_fraction)
    return out


def write_config(root: Path, **overrides) -> Path:
    config = yaml.safe_load(yaml.safe_dump(TINY))
    for dotted, value in overrides.items():
        node = config
        *parents, leaf = dotted.split(".")
        for key in parents:
            node = node.setdefault(key, {})
        node[leaf] = value
    path = root / "tiny.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def run_cli(args: list[str]) -> int:
    """The real entry point in this process; returns the exit status."""
    from gpt_lightning.cli import main

    try:
        main(args)
    except SystemExit as e:
        return e.code if isinstance(e.code, int) else 1
    return 0


def subprocess_env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), str(TESTS), env.get("PYTHONPATH", "")])
    env["PYTHONUNBUFFERED"] = "1"
    return env


def csv_metrics(version_dir: Path) -> dict[int, dict[str, float]]:
    """step -> {metric: value} from a CSVLogger folder."""
    rows: dict[int, dict[str, float]] = {}
    with open(version_dir / "metrics.csv") as f:
        for row in csv.DictReader(f):
            step = int(row.pop("step"))
            rows.setdefault(step, {}).update({k: float(v) for k, v in row.items() if v not in ("", None)})
    return rows


def train_losses(version_dir: Path) -> dict[int, float]:
    return {s: m["train/loss"] for s, m in csv_metrics(version_dir).items() if "train/loss" in m}


def versions(root: Path) -> list[Path]:
    return sorted((root / "out" / "tiny").glob("version_*"), key=lambda p: int(p.name.split("_")[1]))


def assert_close(a: float, b: float, tol: float = 1e-6) -> None:
    assert math.isclose(a, b, rel_tol=0, abs_tol=tol), (a, b)


class Throttle(L.Callback):
    """Slows a subprocess run down and reports its progress in a file, so a test can signal it mid-run."""

    def __init__(self, progress_file: str, seconds: float = 0.25) -> None:
        self.progress_file, self.seconds = Path(progress_file), seconds

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        tmp = self.progress_file.with_suffix(".tmp")
        tmp.write_text(f"{batch_idx + 1} {trainer.global_step}")
        os.replace(tmp, self.progress_file)
        import time

        time.sleep(self.seconds)


def read_progress(path: Path) -> tuple[int, int]:
    """(batches done, optimizer steps done) written by Throttle, or (0, 0)."""
    try:
        batches, steps = path.read_text().split()
        return int(batches), int(steps)
    except (FileNotFoundError, ValueError):
        return 0, 0


def poison_step(monkeypatch, step: int) -> None:
    """Make the training loss NaN at one optimizer step (every micro-batch of it), in this process."""
    import torch

    from gpt_lightning.model import GPT
    from gpt_lightning.train.module import GPTLightningModule

    training_step, forward = GPTLightningModule.training_step, GPT.forward

    def poisoned_training_step(self, batch, batch_idx):
        self.model.poisoned = self.global_step == step
        return training_step(self, batch, batch_idx)

    def poisoned_forward(self, idx, targets=None):
        logits, loss = forward(self, idx, targets)
        if loss is not None and self.training and getattr(self, "poisoned", False):
            loss = loss * torch.nan
        return logits, loss

    monkeypatch.setattr(GPTLightningModule, "training_step", poisoned_training_step)
    monkeypatch.setattr(GPT, "forward", poisoned_forward)


if str(TESTS) not in sys.path:  # so that subprocesses and jsonargparse find `resume_helpers.Throttle`
    sys.path.insert(0, str(TESTS))
