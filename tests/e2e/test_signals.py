"""Signals to a real `python -m gpt_lightning fit` subprocess: SIGTERM/SIGINT finish the optimizer step and save;
SIGKILL loses at most one checkpoint interval; either way the resumed run reproduces the straight one."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from helpers import (
    TINY,
    assert_matches_reference,
    csv_metrics,
    new_root,
    read_progress,
    resumed_losses,
    run_cli_in_process,
    subprocess_env,
    train_losses,
    versions,
    write_tiny_config,
)

pytestmark = pytest.mark.slow

STEPS = TINY["trainer"]["max_steps"]


def start_throttled_fit(root: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "gpt_lightning", "fit", "--config", "tiny.yaml"],
        cwd=root,
        env=subprocess_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for(proc: subprocess.Popen, progress: Path, condition, timeout: float = 240) -> tuple[int, int]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = read_progress(progress)
        if condition(*state):
            return state
        if proc.poll() is not None:
            pytest.fail(f"the run ended before it could be signalled:\n{proc.stderr.read()[-3000:]}")
        time.sleep(0.02)
    proc.kill()
    pytest.fail("the run made no progress in time")


THROTTLE = [{"class_path": "probes.Throttle", "init_args": {"progress_file": "progress.txt"}}]


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_saves_at_step_boundary_and_resumes_exactly(tmp_path, monkeypatch, data_root, reference, sig):
    root = new_root(tmp_path, data_root, **{"trainer.callbacks": THROTTLE, "last_checkpoint.every_n_train_steps": 100})
    proc = start_throttled_fit(root)
    # signal in the middle of gradient accumulation: after the first micro-batch of step 2
    wait_for(proc, root / "progress.txt", lambda batches, steps: batches >= 3 and batches % 2 == 1)
    proc.send_signal(sig)
    stdout, stderr = proc.communicate(timeout=240)
    assert proc.returncode == 128 + sig, stderr[-3000:]
    assert "Traceback" not in stderr
    assert f"{signal.Signals(sig).name} received: finishing this optimizer step" in stderr
    assert "Resume with the same command plus --ckpt_path last." in stdout + stderr
    assert f"run stopped by {signal.Signals(sig).name} at step" in stdout  # the end-of-run summary (console.py)
    ckpt = torch.load(root / "out/ckpt/last.ckpt", weights_only=False)
    step = ckpt["global_step"]
    assert 2 <= step < STEPS  # the step in progress was finished, then the run stopped
    assert ckpt["TokenBinDataModule"]["batches_consumed"] == 2 * step
    assert not list((root / "out/ckpt").glob(".*.tmp-*"))
    stopped_vals = [s for s, m in csv_metrics(versions(root)[0]).items() if "val/loss" in m]
    assert stopped_vals[-1] == step  # the stopped run validated its last step

    monkeypatch.chdir(root)
    write_tiny_config(root)  # the same run, without the throttle
    assert run_cli_in_process(["fit", "--config", "tiny.yaml", "--ckpt_path", "last"]) == 0
    resumed = train_losses(versions(root)[-1])
    assert min(resumed) == step + 1  # the first step after the stop, logged as steps done
    assert_matches_reference(reference, resumed_losses(root), root / "out/ckpt/last.ckpt")


def test_sigkill_loses_at_most_one_checkpoint_interval(tmp_path, monkeypatch, data_root, reference):
    """Also with 2 dataloader workers (the reference has none): the stream does not depend on them, and the
    position restored is the optimizer step's, not that of the batches the workers had prefetched."""
    every = 2
    settings = {"last_checkpoint.every_n_train_steps": every, "data.num_workers": 2}
    root = new_root(tmp_path, data_root, **{"trainer.callbacks": THROTTLE, **settings})
    proc = start_throttled_fit(root)
    _, steps_done = wait_for(proc, root / "progress.txt", lambda batches, steps: steps >= 5)
    proc.kill()
    proc.communicate(timeout=60)
    ckpt = torch.load(root / "out/ckpt/last.ckpt", weights_only=False)  # complete, whatever the moment
    assert steps_done - every <= ckpt["global_step"] <= steps_done + 1
    assert ckpt["global_step"] % every == 0

    monkeypatch.chdir(root)
    write_tiny_config(root, **settings)
    assert run_cli_in_process(["fit", "--config", "tiny.yaml", "--ckpt_path", "last"]) == 0
    assert not list((root / "out/ckpt").glob(".*.tmp-*"))  # a killed save's temporary file is cleaned up
    assert_matches_reference(reference, train_losses(versions(root)[-1]), root / "out/ckpt/last.ckpt")
