"""`doctor`'s parts in this process: the peak-FLOPs entry, the tested Lightning range, a compile check that takes
too long, and the GPU branch with a GPU faked. The command itself: e2e/test_doctor_cli.py."""

from __future__ import annotations

from types import SimpleNamespace

import torch

from gpt_lightning.cli import doctor as doctor_cli


def lines_by_name(stdout: str) -> dict[str, str]:
    return {line[:12].strip(): line[12:].strip() for line in stdout.splitlines() if line[:12].strip()}


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
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda *a: (7, 0))
    problems = doctor_cli.doctor(out_dir=tmp_path, check_compile=False)
    lines = lines_by_name(capsys.readouterr().out)
    assert problems == 0
    assert lines["GPU 0"] == "Tesla V100-SXM2-16GB, 16 GiB, compute capability 7.0" and "GPU 1" in lines
    assert "'V100'" in lines["peak FLOPs"] and "fp16 125" in lines["peak FLOPs"]
    assert lines["bf16"].startswith("not supported") and "--trainer.precision=16-mixed" in lines["bf16"]
    assert lines["TF32"].startswith("not on compute capability 7.x")
