"""`python -m gpt_lightning doctor` on this CPU machine, and its GPU branch with a GPU faked in-process."""

from __future__ import annotations

import importlib.metadata
import json
import shutil
import subprocess
import sys
from types import SimpleNamespace

import pytest
import torch

from conftest import REPO, run_cli
from gpt_lightning.cli import doctor as doctor_cli


def lines_by_name(stdout: str) -> dict[str, str]:
    return {line[:12].strip(): line[12:].strip() for line in stdout.splitlines() if line[:12].strip()}


def test_doctor_reports_versions_disk_and_a_good_data_folder(char_data, tmp_path):
    result = run_cli("doctor", f"--data_dir={char_data}", f"--out_dir={tmp_path / 'out'}", "--check_compile=false")
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
    assert lines["compile"].startswith("not checked")
    assert "0 problem(s)" in result.stdout


def test_doctor_flags_a_truncated_bin_with_exit_status_1(char_data, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(char_data, broken)
    with open(broken / "train.bin", "r+b") as f:
        f.truncate(f.seek(0, 2) - 1)  # half a uint16 token missing
    result = run_cli("doctor", f"--data_dir={broken}", f"--out_dir={tmp_path}", "--check_compile=false")
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


def test_compile_check_that_takes_too_long_is_reported_not_waited_for():
    works, text = doctor_cli.compile_result(doctor_cli.start_compile_probe("cpu"), timeout=0.01)
    assert not works and text.startswith("did not finish within 0.01 s")


def test_peak_flops_entry_or_mfu_off():
    text, warning = doctor_cli.peak_flops_text("NVIDIA H100 80GB HBM3")
    assert "'H100'" in text and "bf16 989" in text and warning is None
    text, warning = doctor_cli.peak_flops_text("NVIDIA H100 NVL")
    assert "'H100 NVL'" in text and "bf16 835" in text
    text, warning = doctor_cli.peak_flops_text("NVIDIA Imaginary X1")
    assert text == "unknown: MFU off" and "PEAK_FLOPS" in warning


def test_lightning_outside_the_tested_range_is_a_warning(monkeypatch):
    monkeypatch.setattr(doctor_cli, "pinned", lambda name: ">=2.6,<2.7")
    assert doctor_cli.version_against_pin("lightning", "2.6.6") == ("2.6.6, tested range >=2.6,<2.7: ok", None)
    text, warning = doctor_cli.version_against_pin("lightning", "2.7.0")
    assert "outside the tested range" in warning and "pip install 'lightning>=2.6,<2.7'" in warning


def test_gpu_branch_with_a_faked_gpu(monkeypatch, capsys, tmp_path):
    """What doctor prints on a V100 machine (compute capability 7.0: no bf16, no TF32), without one."""
    props = SimpleNamespace(name="Tesla V100-SXM2-16GB", total_memory=16 * 2**30, major=7, minor=0)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda i: props)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda *a: (7, 0))
    problems = doctor_cli.doctor(out_dir=tmp_path, check_compile=False)
    lines = lines_by_name(capsys.readouterr().out)
    assert problems == 0
    assert lines["GPU 0"] == "Tesla V100-SXM2-16GB, 16 GiB, compute capability 7.0" and "GPU 1" in lines
    assert "'V100'" in lines["peak FLOPs"] and "fp16 125" in lines["peak FLOPs"]
    assert lines["bf16"].startswith("not supported: precision auto gives 16-mixed")
    assert lines["TF32"].startswith("not on compute capability 7.x")
