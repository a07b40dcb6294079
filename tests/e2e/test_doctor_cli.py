"""`python -m gpt_lightning doctor` in a subprocess on this CPU machine: its report, its exit status on a broken
data folder, no Lightning import, and a real torch.compile in a side process."""

from __future__ import annotations

import importlib.metadata
import json
import shutil
import subprocess
import sys

import pytest
import torch

from gpt_lightning.cli import doctor as doctor_cli
from helpers import REPO, run_cli_subprocess

pytestmark = pytest.mark.slow


def lines_by_name(stdout: str) -> dict[str, str]:
    return {line[:12].strip(): line[12:].strip() for line in stdout.splitlines() if line[:12].strip()}


def test_doctor_reports_versions_disk_and_a_good_data_folder(char_data, tmp_path):
    # without --check_compile: on a machine without a GPU the compile probe is opt-in
    result = run_cli_subprocess(["doctor", f"--data_dir={char_data}", f"--out_dir={tmp_path / 'out'}"])
    assert result.returncode == 0, result.stdout + result.stderr
    lines = lines_by_name(result.stdout)
    assert torch.__version__ in lines["torch"]
    assert lines["CUDA"].startswith("not available") and "MFU off" in lines["GPU"]
    lightning = importlib.metadata.version("lightning")
    pin = doctor_cli.pinned("lightning")
    assert lines["lightning"].startswith(lightning) and f"tested range {pin}: ok" in lines["lightning"]
    assert "GiB free for" in lines["disk"] and "problem" not in lines["disk"]
    meta = json.loads((char_data / "meta.json").read_text())
    assert f"char vocab {meta['vocab_size']}" in lines["data"]
    assert f"{meta['train_tokens']:,} train + {meta['val_tokens']:,} val" in lines["data"]
    assert lines["data"].endswith(": ok")
    assert lines["compile"].startswith("not checked (no GPU") and "--check_compile true" in lines["compile"]
    assert "0 problem(s)" in result.stdout


def test_doctor_flags_a_truncated_bin_with_exit_status_1(char_data, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(char_data, broken)
    with open(broken / "train.bin", "r+b") as f:
        f.truncate(f.seek(0, 2) - 1)  # half a uint16 token missing
    result = run_cli_subprocess(["doctor", f"--data_dir={broken}", f"--out_dir={tmp_path}", "--check_compile=false"])
    assert result.returncode == 1, result.stdout + result.stderr
    data = lines_by_name(result.stdout)["data"]
    assert "problem:" in data and "truncated or corrupt" in data and "--overwrite" in data
    assert "1 problem(s)" in result.stdout


def test_doctor_does_not_import_lightning():
    # it starts in about a second because it reads Lightning's version from the package metadata
    code = (
        "import sys; from gpt_lightning.cli.doctor import doctor; doctor(check_compile=False); "
        "print('LIGHTNING_IMPORTED', 'lightning' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "LIGHTNING_IMPORTED False" in out.stdout


@pytest.mark.skipif(shutil.which("g++") is None and shutil.which("c++") is None, reason="no C++ compiler here")
def test_compile_check_works_here_and_says_why_when_the_compiler_is_missing(monkeypatch):
    works, text = doctor_cli.compile_result(doctor_cli.start_compile_probe("cpu"), timeout=300)
    assert works, text
    assert text.startswith("a first compile took")
    monkeypatch.setenv("CXX", "/nonexistent/c++")  # inductor's compiler on CPU
    works, text = doctor_cli.compile_result(doctor_cli.start_compile_probe("cpu"), timeout=300)
    assert not works and "C++ compiler" in text, text
