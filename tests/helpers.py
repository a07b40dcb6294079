"""What tests share: the one tiny run (config as a dict, a YAML file or CLI flags), two ways to run the real
command line (in this process, or as `python -m gpt_lightning` in a subprocess), tiny corpora, and checks.

pytest puts tests/ on sys.path (`pythonpath` in pyproject.toml); subprocesses get it via `subprocess_env`, so
the callbacks in probes.py work as `class_path` in a subprocess run too.
"""

from __future__ import annotations

import copy
import csv
import math
import os
import random
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent
SHARED_TINYSHAKESPEARE = REPO.parent / "shared" / "data" / "tinyshakespeare.txt"

# ---------------------------------------------------------------- the tiny run

# 2 layers, 32 wide, block 16, batch 8, accumulation 2, on the CPU: a step takes milliseconds.
TINY = {
    "seed_everything": 1337,
    "val_every_n_steps": 4,
    "trainer": {
        "accelerator": "cpu",
        "devices": 1,
        "precision": "32-true",
        "max_steps": 8,
        "accumulate_grad_batches": 2,
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
        "bias": False,
        "learning_rate": 1.0e-2,
        "min_lr": 1.0e-3,
        "warmup_steps": 2,
        "lr_decay_steps": 8,
        "compile": False,
    },
    "data": {"data_dir": "data/tiny", "block_size": 16, "batch_size": 8, "val_batches": 2},
    "checkpoint": {"dirpath": "out/ckpt"},
    "last_checkpoint": {"every_n_train_steps": 2},
    "sample": {"max_new_tokens": 0},
}


def tiny_config(**overrides) -> dict:
    """A copy of TINY with dotted overrides: tiny_config(**{"trainer.max_steps": 2})."""
    config = copy.deepcopy(TINY)
    for dotted, value in overrides.items():
        node = config
        *parents, leaf = dotted.split(".")
        for key in parents:
            node = node.setdefault(key, {})
        node[leaf] = value
    return config


def write_tiny_config(root: Path, **overrides) -> Path:
    """tiny_config(**overrides) as root/tiny.yaml, for `fit --config tiny.yaml`."""
    path = root / "tiny.yaml"
    path.write_text(yaml.safe_dump(tiny_config(**overrides)))
    return path


def tiny_args(*keys: str) -> list[str]:
    """TINY's entries under dotted keys as CLI flags: tiny_args("model.n_layer", "data") ->
    ["--model.n_layer=2", "--data.data_dir=data/tiny", ...]."""

    def flags(prefix: str, value) -> list[str]:
        if isinstance(value, dict) and "class_path" not in value:
            return [flag for key, sub in value.items() for flag in flags(f"{prefix}.{key}", sub)]
        text = yaml.safe_dump(value, default_flow_style=True).strip().removesuffix("...").strip()
        return [f"--{prefix}={text}"]

    out: list[str] = []
    for dotted in keys:
        value = TINY
        for key in dotted.split("."):
            value = value[key]
        out += flags(dotted, value)
    return out


# The tiny model on a CPU as flags to lay over a preset (which keeps its own logger, schedule and callbacks).
TINY_OVER_PRESET = tiny_args(
    *(f"model.{key}" for key in ("n_layer", "n_head", "n_embd", "dropout", "bias", "warmup_steps", "compile")),
    *(f"data.{key}" for key in ("block_size", "batch_size", "val_batches")),
    *(
        f"trainer.{key}"
        for key in ("accelerator", "devices", "precision", "enable_progress_bar", "enable_model_summary")
    ),
)

# ---------------------------------------------------------------- running the real command line


def run_cli_in_process(args: list[str]) -> int:
    """`gpt_lightning ARGS` in this process (monkeypatches apply); returns the exit status."""
    from gpt_lightning.cli import main

    try:
        main(args)
    except SystemExit as e:
        return e.code if isinstance(e.code, int) else 1
    return 0


def subprocess_env(**extra: str) -> dict[str, str]:
    """This environment, with the repo the tests run from and tests/ (for class_path probes) importable."""
    path = [str(REPO), str(TESTS), *filter(None, [os.environ.get("PYTHONPATH")])]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(path), "PYTHONUNBUFFERED": "1", **extra}


def run_cli_in(root: Path, args: list[str]) -> int:
    """run_cli_in_process with root as the working directory (the tiny config's relative paths start there)."""
    cwd = os.getcwd()
    os.chdir(root)
    try:
        return run_cli_in_process(args)
    finally:
        os.chdir(cwd)


def run_cli_subprocess(
    args: list[str], cwd: Path | None = None, timeout: float = 300, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    """`python -m gpt_lightning ARGS` in a subprocess (the real entry point), with its output captured."""
    return subprocess.run(
        [sys.executable, "-m", "gpt_lightning", *args],
        cwd=cwd,
        env=subprocess_env(**(env or {})),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


# ---------------------------------------------------------------- tiny corpora

TINY_TEXT = (
    "First Citizen:\nBefore we proceed any further, hear me speak.\n\n"
    "All:\nSpeak, speak.\n\n"
    "First Citizen:\nYou are all resolved rather to die than to famish?\n\n"
    "All:\nResolved. resolved.\n\n"
) * 40


# What the generation tests prompt with and train their char vocabulary on.
ROMEO_TEXT = "ROMEO:\nBut soft, what light through yonder window breaks?\nIt is the east, and Juliet is the sun.\n" * 30


def synthetic_text(n_chars: int = 20000, seed: int = 0, alphabet: str = "abcdefghij .,\n") -> str:
    """Deterministic text with some structure (repeated words), so losses move."""
    rng = random.Random(seed)
    words = ["".join(rng.choice(alphabet[:10]) for _ in range(rng.randint(2, 6))) for _ in range(50)]
    out: list[str] = []
    while sum(map(len, out)) < n_chars:
        out.append(rng.choice(words) + rng.choice(alphabet[10:]))
    return "".join(out)[:n_chars]


def make_data(root: Path, name: str = "tiny", text: str | None = None, val_fraction: float = 0.1) -> Path:
    """root/data/NAME prepared (char tokenizer) from synthetic_text(), where TINY's data_dir points."""
    from gpt_lightning.data.prepare import prepare

    src = root / f"{name}.txt"
    src.write_text(synthetic_text() if text is None else text, encoding="utf-8")
    out = root / "data" / name
    prepare(str(src), "char", out, val_fraction=val_fraction)
    return out


def save_tiny_checkpoint(path: Path, tokenizer_meta: dict, vocab_size: int, block_size: int = 16) -> Path:
    """A real Lightning checkpoint: one optimizer step of a one-layer model through the Trainer, then saved."""
    import lightning as L
    import torch

    from gpt_lightning.train.module import GPTLightningModule

    module = GPTLightningModule(
        vocab_size=vocab_size, block_size=block_size, n_layer=1, n_head=2, n_embd=16,
        warmup_steps=0, compile=False, tokenizer=tokenizer_meta,
    )  # fmt: skip
    x = torch.randint(0, vocab_size, (4, block_size + 1))
    loader = torch.utils.data.DataLoader(list(zip(x[:, :-1], x[:, 1:])), batch_size=4)
    trainer = L.Trainer(
        accelerator="cpu", max_steps=1, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False,
    )  # fmt: skip
    trainer.fit(module, loader)
    trainer.save_checkpoint(path)
    return path


# ---------------------------------------------------------------- Hugging Face stand-ins (the hf extra)


def random_hf_model(**config) -> transformers.GPT2LMHeadModel:  # noqa: F821 (imported here, when needed)
    """A tiny transformers GPT-2 with every parameter random (HF initialises biases and LayerNorms to 0 and 1,
    which would hide a bias or LayerNorm mix-up)."""
    import pytest
    import torch

    transformers = pytest.importorskip("transformers", reason="Hugging Face models come with the `hf` extra")
    torch.manual_seed(0)
    defaults = dict(vocab_size=97, n_positions=32, n_embd=32, n_layer=2, n_head=4, bos_token_id=None, eos_token_id=None)
    model = transformers.GPT2LMHeadModel(transformers.GPT2Config(**{**defaults, **config}))
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0.0, 0.2)
    return model.eval()


def hf_logits(model, idx):
    """A transformers model's logits at every position."""
    import torch

    with torch.no_grad():
        return model(idx).logits


def our_logits(model, idx):
    """Our GPT's logits at every position (with targets it returns them all)."""
    import torch

    with torch.no_grad():
        return model(idx, idx)[0]


# ---------------------------------------------------------------- reading a run's results


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


def tensorboard_scalars(run_dir: Path, tag: str) -> list[tuple[int, float]]:
    """(step, value) of one scalar in a TensorBoard run folder; [] if it was never logged."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run_dir), size_guidance={"scalars": 0, "tensors": 0})
    acc.Reload()
    return [(e.step, e.value) for e in acc.Scalars(tag)] if tag in acc.Tags()["scalars"] else []


# ---------------------------------------------------------------- exact resume: a straight run to compare with


def new_root(tmp_path: Path, data_root: Path, **overrides) -> Path:
    """A run folder: data_root's data/ and tiny.yaml with the overrides."""
    shutil.copytree(data_root / "data", tmp_path / "data")
    write_tiny_config(tmp_path, **overrides)
    return tmp_path


def straight_run(root: Path) -> dict:
    """Per-step losses and learning rates, and final weights, of the run configured in root/tiny.yaml."""
    import torch

    assert run_cli_in(root, ["fit", "--config", "tiny.yaml"]) == 0
    metrics = csv_metrics(versions(root)[0])
    ckpt = torch.load(root / "out/ckpt/last.ckpt", weights_only=False)
    assert ckpt["global_step"] == TINY["trainer"]["max_steps"]
    return {
        "losses": {s: m["train/loss"] for s, m in metrics.items() if "train/loss" in m},
        "lrs": {s: m["train/lr"] for s, m in metrics.items() if "train/lr" in m},
        "state_dict": ckpt["state_dict"],
    }


def assert_matches_reference(reference: dict, losses: dict[int, float], final_ckpt: Path) -> None:
    """The losses logged and the final weights are those of the straight run."""
    import torch

    assert losses, "no train losses were logged"
    for step, loss in losses.items():
        assert_close(loss, reference["losses"][step])
    ckpt = torch.load(final_ckpt, weights_only=False)
    assert ckpt["global_step"] == TINY["trainer"]["max_steps"]
    for name, tensor in reference["state_dict"].items():
        torch.testing.assert_close(ckpt["state_dict"][name], tensor, rtol=0, atol=1e-6)


def resumed_losses(root: Path) -> dict[int, float]:
    losses: dict[int, float] = {}
    for v in versions(root):
        losses.update(train_losses(v))  # a later run overwrites the steps an interrupted one logged twice
    return losses


# ---------------------------------------------------------------- probes


def read_progress(path: Path) -> tuple[int, int]:
    """(batches done, optimizer steps done) written by probes.Throttle, or (0, 0)."""
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
