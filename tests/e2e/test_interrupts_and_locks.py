"""Where a second process or a signal is the point (issue 16), through `python -m gpt_lightning` subprocesses: one run
per checkpoint folder (and a killed run never leaves it locked); Ctrl-C in generate, prepare, a second Ctrl-C in
fit, and a first one during a long validation."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from helpers import make_data, read_progress, run_cli_subprocess, subprocess_env, synthetic_text, write_tiny_config

pytestmark = pytest.mark.slow

THROTTLE = [{"class_path": "probes.Throttle", "init_args": {"progress_file": "progress.txt"}}]


def start(args: list[str], cwd: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "gpt_lightning", *args],
        cwd=cwd,
        env=subprocess_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_until(proc: subprocess.Popen, condition, timeout: float = 240) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        if proc.poll() is not None:
            pytest.fail(f"the process ended before it could be signalled:\n{proc.stderr.read()[-3000:]}")
        time.sleep(0.05)
    proc.kill()
    pytest.fail("no progress in time")


@pytest.fixture
def root(tmp_path) -> Path:
    make_data(tmp_path)
    return tmp_path


def test_a_second_run_into_the_same_folder_is_refused_and_a_killed_run_leaves_no_lock(root):
    write_tiny_config(root, **{"trainer.callbacks": THROTTLE, "trainer.max_steps": 1000})
    first = start(["fit", "--config", "tiny.yaml"], root)
    try:
        wait_until(first, lambda: read_progress(root / "progress.txt")[1] >= 1)
        second = run_cli_subprocess(["fit", "--config", "tiny.yaml", "--ckpt_path", "last"], cwd=root)
        assert second.returncode == 2, second.stderr[-3000:]
        assert (
            f"error: out/ckpt is in use by another run (pid {first.pid} on {socket.gethostname()}, started "
            in second.stderr
        ), second.stderr[-3000:]
        assert "gpt_lightning fit --config tiny.yaml" in second.stderr
        assert "Traceback" not in second.stderr
    finally:
        first.kill()  # SIGKILL: no handler runs, the OS drops the lock
        first.communicate(timeout=60)
    step = torch.load(root / "out/ckpt/last.ckpt", weights_only=False)["global_step"]
    write_tiny_config(root, **{"trainer.max_steps": step + 2})
    resumed = run_cli_subprocess(["fit", "--config", "tiny.yaml", "--ckpt_path", "last"], cwd=root)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert torch.load(root / "out/ckpt/last.ckpt", weights_only=False)["global_step"] == step + 2


def test_ctrl_c_in_generate_is_one_line_and_exit_130(root):
    write_tiny_config(root, **{"trainer.max_steps": 2})
    assert run_cli_subprocess(["fit", "--config", "tiny.yaml"], cwd=root).returncode == 0
    proc = start(["generate", "--ckpt_path", "out/ckpt", "--max_new_tokens", "1000000", "--prompt", "a"], root)
    time.sleep(15)  # loading, then generating (a million tokens take minutes)
    assert proc.poll() is None, proc.stderr.read()[-3000:]
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-3000:]
    assert "Traceback" not in err and "KeyboardInterrupt" not in err
    assert "interrupted (Ctrl-C)" in err


def test_ctrl_c_in_prepare_is_one_line_exit_130_and_leaves_no_folder(root):
    (root / "big.txt").write_text(synthetic_text() * 1000)  # 20 million characters
    proc = start(["prepare", "--source", "big.txt", "--out", "data/big", "--batch_chars", "100000"], root)
    wait_until(proc, lambda: (root / "data/big").is_dir())
    time.sleep(0.5)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-3000:]
    assert "Traceback" not in err and "KeyboardInterrupt" not in err
    assert not (root / "data/big").exists()  # its temporaries gone, and the folder it made too


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["kill", "Ctrl-C"])
def test_a_signal_to_prepare_with_workers_is_one_line_and_leaves_no_folder(root, sig):
    """`kill PID` of `prepare --num_proc 2`: the workers printed four BrokenPipe tracebacks into the pipe of a main
    process that SIGTERM had ended at once, leaving its temporaries behind."""
    (root / "big.txt").write_text(synthetic_text() * 1000)  # 20 million characters
    args = ["prepare", "--source", "big.txt", "--out", "data/big", "--batch_chars", "100000", "--num_proc", "2"]
    proc = start(args, root)
    wait_until(proc, lambda: (root / "data/big").is_dir())
    time.sleep(0.5)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + sig, err[-3000:]
    assert "Traceback" not in err and "BrokenPipe" not in err and "KeyboardInterrupt" not in err, err[-3000:]
    assert ("SIGTERM received: stopping." if sig == signal.SIGTERM else "interrupted (Ctrl-C)") in err
    assert not (root / "data/big").exists()


def test_a_second_ctrl_c_in_fit_stops_at_once_with_exit_130(root):
    write_tiny_config(root, **{"trainer.callbacks": THROTTLE, "trainer.max_steps": 1000})
    proc = start(["fit", "--config", "tiny.yaml"], root)
    wait_until(proc, lambda: read_progress(root / "progress.txt")[0] >= 1)
    proc.send_signal(signal.SIGINT)
    time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-3000:]
    assert "Traceback" not in err and "KeyboardInterrupt" not in err
    assert "SIGINT again: stopping at once" in err


def test_ctrl_c_during_a_long_validation_stops_it_saves_and_exits_130(root):
    slow = [{"class_path": "probes.SlowValidation", "init_args": {"progress_file": "progress.txt", "seconds": 0.1}}]
    # validation after step 2 has 1000 batches of 0.1 s each: 100 s if it ran to its end
    write_tiny_config(root, **{"trainer.callbacks": slow, "val_every_n_steps": 2, "data.val_batches": 1000})
    proc = start(["fit", "--config", "tiny.yaml"], root)
    wait_until(proc, lambda: (root / "progress.txt").is_file())
    signalled = time.monotonic()
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    waited = time.monotonic() - signalled
    assert proc.returncode == 130, err[-3000:]
    assert "Traceback" not in err
    batches_done = int((root / "progress.txt").read_text().split()[2])
    assert batches_done < 1000  # it did not validate to the end
    assert "Stopped after step 2; saved out/ckpt/last.ckpt." in err, err[-3000:]
    assert torch.load(root / "out/ckpt/last.ckpt", weights_only=False)["global_step"] == 2
    assert waited < 60, waited

    write_tiny_config(root)  # the same run without the slow validation resumes and finishes
    resumed = run_cli_subprocess(["fit", "--config", "tiny.yaml", "--ckpt_path", "last"], cwd=root)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert torch.load(root / "out/ckpt/last.ckpt", weights_only=False)["global_step"] == 8


def test_ctrl_c_in_validate_is_one_line_and_exit_130(root):
    write_tiny_config(root, **{"trainer.max_steps": 2})
    assert run_cli_subprocess(["fit", "--config", "tiny.yaml"], cwd=root).returncode == 0
    slow = [{"class_path": "probes.SlowValidation", "init_args": {"progress_file": "progress.txt", "seconds": 0.1}}]
    write_tiny_config(root, **{"trainer.callbacks": slow, "data.val_batches": 1000})
    proc = start(["validate", "--config", "tiny.yaml", "--ckpt_path", "out/ckpt/last.ckpt"], root)
    wait_until(proc, lambda: (root / "progress.txt").is_file())
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-3000:]
    assert "Traceback" not in err and "KeyboardInterrupt" not in err
    assert "interrupted (Ctrl-C)" in err


@pytest.mark.parametrize(
    "command, sig",
    [("validate", signal.SIGTERM), ("fit", signal.SIGTERM), ("fit", signal.SIGINT)],
    ids=["SIGTERM-in-validate", "SIGTERM-in-fits-start-validation", "SIGINT-in-fits-start-validation"],
)
def test_a_signal_while_nothing_is_trained_is_one_line_and_128_plus_the_signal(root, command, sig):
    """validate, and fit's validation before its first step (num_sanity_val_steps=-1): Lightning alone exits 0 on
    SIGTERM (a requeue script would see success) and 1 with its own text on Ctrl-C."""
    write_tiny_config(root, **{"trainer.max_steps": 2})
    assert run_cli_subprocess(["fit", "--config", "tiny.yaml"], cwd=root).returncode == 0
    slow = {"progress_file": "progress.txt", "seconds": 0.1, "sanity_check_too": True}
    write_tiny_config(
        root,
        **{
            "trainer.callbacks": [{"class_path": "probes.SlowValidation", "init_args": slow}],
            "trainer.num_sanity_val_steps": -1,
            "data.val_batches": 1000,
        },
    )
    args = ["--ckpt_path", "out/ckpt/last.ckpt"] if command == "validate" else ["--checkpoint.dirpath", "out/new"]
    proc = start([command, "--config", "tiny.yaml", *args], root)
    wait_until(proc, lambda: (root / "progress.txt").is_file())
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + sig, err[-3000:]
    assert "Traceback" not in err and "KeyboardInterrupt" not in err and "graceful shutdown" not in err
    line = "interrupted (Ctrl-C)" if sig == signal.SIGINT else "SIGTERM received: stopping at once (nothing to save)."
    assert line in err
