"""Shared fixtures: tiny corpora and prepared data folders, and a runner for the real CLI."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_TINYSHAKESPEARE = REPO.parent / "shared" / "data" / "tinyshakespeare.txt"

TINY_TEXT = (
    "First Citizen:\nBefore we proceed any further, hear me speak.\n\n"
    "All:\nSpeak, speak.\n\n"
    "First Citizen:\nYou are all resolved rather to die than to famish?\n\n"
    "All:\nResolved. resolved.\n\n"
) * 40


@pytest.fixture(scope="session")
def tiny_text_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("text") / "tiny.txt"
    path.write_text(TINY_TEXT)
    return path


@pytest.fixture(scope="session")
def char_data(tmp_path_factory, tiny_text_file) -> Path:
    """A char-level data folder prepared from TINY_TEXT (about 7k train tokens)."""
    from gpt_lightning.data.prepare import prepare

    out = tmp_path_factory.mktemp("data") / "tiny_char"
    prepare(str(tiny_text_file), "char", out)
    return out


def run_cli(*args: str, cwd: Path | None = None, timeout: float = 300, env: dict | None = None) -> subprocess.CompletedProcess:
    """`python -m gpt_lightning ARGS` in a subprocess (the real entry point), with output captured."""
    full_env = {**os.environ, "PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1", **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "gpt_lightning", *args],
        cwd=cwd,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


# The smallest model and run that still exercises everything: 2 layers, 32 wide, block 16.
TINY_MODEL_ARGS = [
    "--model.n_layer=2",
    "--model.n_head=2",
    "--model.n_embd=32",
    "--model.dropout=0.0",
    "--model.bias=false",
    "--model.warmup_steps=2",
    "--model.compile=false",
    "--data.block_size=16",
    "--data.batch_size=8",
    "--data.val_batches=4",
    "--trainer.accelerator=cpu",
    "--trainer.devices=1",
    "--trainer.enable_progress_bar=false",
    "--trainer.enable_model_summary=false",
    "--trainer.precision=32-true",
]
