"""The GPU code paths that torch also runs on a CPU, through the real `fit`: fused AdamW with clipping, bf16-mixed
autocast, 16-mixed with a GradScaler. probes.PathProbe records what really ran, so each test asserts the path
was taken, not only that the loss fell. And the CLI must not touch CUDA before the Trainer exists."""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from gpt_lightning.hardware import auto_precision, check_precision
from gpt_lightning.train.clipping import clip_gradients, fused_adamw_options
from helpers import REPO, new_root, run_cli_in_process, write_tiny_config

CLIP = 0.05  # well under the tiny model's gradient norms (~1), so clipping acts on every step


def tiny_root(tmp_path: Path) -> Path:
    write_tiny_config(tmp_path)
    return tmp_path


def probed_fit(monkeypatch, root: Path, data: Path, *args: str) -> dict:
    """The tiny run (helpers.TINY on the repetitive TINY_TEXT, 16 optimizer steps, no accumulation, clipping at
    CLIP) with PathProbe."""
    monkeypatch.chdir(root)
    out = root / "probe.json"
    status = run_cli_in_process(
        [
            "fit", "--config", "tiny.yaml", f"--data.data_dir={data}", "--trainer.max_steps=16",
            "--model.lr_decay_steps=16", "--trainer.accumulate_grad_batches=1",
            f"--trainer.gradient_clip_val={CLIP}", "--trainer.callbacks+=probes.PathProbe",
            f"--trainer.callbacks.out={out}", *args,
        ]
    )  # fmt: skip
    assert status == 0
    return json.loads(out.read_text())


def assert_trained_and_clipped(run: dict) -> None:
    losses = run["losses"]
    assert len(losses) == 16
    assert statistics.mean(losses[-4:]) < statistics.mean(losses[:4]) - 0.2, losses
    assert min(run["norms_before_clip"]) > CLIP  # clipping had work to do on every step...
    assert max(run["norms_after_clip"]) <= CLIP * (1 + 1e-4)  # ...and did it


@pytest.mark.slow  # a few seconds of Trainer run: left out of the fast loop, run in CI
def test_fused_adamw_with_gradient_clipping(tmp_path, char_data, monkeypatch):
    """32-true: AdamW is fused (as on a GPU), and our clipping path for fused optimizers, which Lightning 2.6
    refuses (#21435), clips."""
    run = probed_fit(monkeypatch, tiny_root(tmp_path), char_data, "--trainer.precision=32-true")
    assert run["optimizer"]["fused"] is True and run["scaler"] is None
    assert run["autocast"]["enabled"] is False and run["logits_dtype"] == "torch.float32"
    assert_trained_and_clipped(run)


@pytest.mark.slow  # a few seconds of Trainer run: left out of the fast loop, run in CI
def test_bf16_mixed_autocast_with_fused_adamw_and_clipping(tmp_path, char_data, monkeypatch):
    """bf16-mixed: the forward runs under bf16 autocast (seen from inside the model), with fused AdamW and
    clipping together (the combination #21435 breaks in Lightning 2.6)."""
    run = probed_fit(monkeypatch, tiny_root(tmp_path), char_data, "--trainer.precision=bf16-mixed")
    assert run["precision"] == "bf16-mixed"
    assert run["autocast"] == {"enabled": True, "dtype": "torch.bfloat16"}
    assert run["logits_dtype"] == "torch.bfloat16"
    assert run["optimizer"]["fused"] is True
    assert_trained_and_clipped(run)


def test_16_mixed_grad_scaler_with_clipping(tmp_path, char_data, monkeypatch):
    """fp16 autocast with a real GradScaler (Lightning turns `16-mixed` into bf16 on a CPU, so the precision
    plugin is given directly): AdamW is foreach, the scaler unscales before clipping, the clipped norm holds."""
    plugin = {
        "class_path": "lightning.pytorch.plugins.precision.MixedPrecision",
        "init_args": {"precision": "16-mixed", "device": "cpu"},
    }
    plugins = f"--trainer.plugins={json.dumps(plugin)}"
    run = probed_fit(monkeypatch, tiny_root(tmp_path), char_data, "--trainer.precision=null", plugins)
    assert run["precision"] == "16-mixed" and run["scaler"] is not None and run["scaler"] > 0
    assert run["autocast"] == {"enabled": True, "dtype": "torch.float16"}
    assert run["optimizer"]["fused"] is not True and run["optimizer"]["foreach"] is True
    assert_trained_and_clipped(run)


# ---------------------------------------------------------------- the decisions, one by one


@pytest.mark.parametrize(
    "device, precision, expected",
    [
        ("cuda", "bf16-mixed", {"fused": True}),
        ("cuda", "32-true", {"fused": True}),
        ("cuda", "16-mixed", {"foreach": True}),  # the GradScaler must unscale before clipping
        ("cpu", "32-true", {"fused": True}),
        ("cpu", "16-mixed", {"foreach": True}),
        ("meta", "32-true", {}),  # elsewhere: torch's default
    ],
)
def test_fused_adamw_choice(device, precision, expected):
    assert fused_adamw_options(torch.device(device), precision) == expected


def test_clipping_goes_through_lightning_unless_the_optimizer_is_fused(monkeypatch):
    """16-mixed (foreach): Lightning's own clipping, after its GradScaler has unscaled; fused: clipped directly."""
    calls = []
    module = SimpleNamespace(
        trainer=SimpleNamespace(model=torch.nn.Linear(2, 2)),
        parameters=lambda: [],
        clip_gradients=lambda optimizer, val, algorithm: calls.append(("lightning", val)),
    )
    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", lambda params, val: calls.append(("direct", val)))
    foreach = SimpleNamespace(defaults={"foreach": True, "fused": None})
    fused = SimpleNamespace(defaults={"foreach": None, "fused": True})
    clip_gradients(module, foreach, 1.0, "norm")
    clip_gradients(module, fused, 1.0, "norm")
    assert calls == [("lightning", 1.0), ("direct", 1.0)]


def test_precision_is_decided_without_touching_cuda(monkeypatch):
    touched = []
    for name in ("get_device_capability", "get_device_properties", "is_bf16_supported", "current_device"):
        monkeypatch.setattr(torch.cuda, name, lambda *a, _name=name, **k: touched.append(_name))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert auto_precision("auto") == "bf16-mixed" and auto_precision("gpu") == "bf16-mixed"
    assert auto_precision("cpu") == "32-true"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert auto_precision("auto") == "32-true"
    assert touched == []


def test_bf16_on_a_gpu_without_it_is_one_clear_error(monkeypatch):
    from gpt_lightning.errors import UserError

    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (7, 0))
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "Tesla V100-SXM2-16GB")
    with pytest.raises(UserError, match=r"Tesla V100.*compute capability 7\.0.*--trainer.precision=16-mixed"):
        check_precision(torch.device("cuda", 0), "bf16-mixed")
    check_precision(torch.device("cuda", 0), "16-mixed")  # fine
    check_precision(torch.device("cpu"), "bf16-mixed")  # CPUs emulate nothing: fine
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (8, 0))
    check_precision(torch.device("cuda", 0), "bf16-mixed")  # Ampere: fine


# ---------------------------------------------------------------- nothing touches CUDA before the Trainer exists


def test_parsing_and_instantiating_a_gpu_config_does_not_initialise_cuda(tmp_path, data_root, monkeypatch):
    """The baby GPT preset on a (mocked) GPU, parsed and instantiated as `fit` does, up to a Trainer on cuda:0.
    Every call that would initialise CUDA or ask the GPU anything is recorded; none may happen. (A CUDA
    context in the launching process breaks `ddp_fork` and notebook launches.)"""
    from gpt_lightning.cli.fit import GPTLightningCLI

    touched = []
    for name in (
        "_lazy_init",  # every call that needs a CUDA context goes through it (test-only use of a private name)
        "init", "get_device_capability", "get_device_properties", "get_device_name", "is_bf16_supported",
        "current_device", "set_device", "synchronize", "mem_get_info",
    ):  # fmt: skip
        monkeypatch.setattr(torch.cuda, name, lambda *a, _name=name, **k: touched.append(_name))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # as NVML says, without a context
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    before = torch.get_float32_matmul_precision()
    root = new_root(tmp_path, data_root)
    monkeypatch.chdir(root)
    try:
        cli = GPTLightningCLI(
            args=[
                "--config", str(REPO / "configs" / "shakespeare_char.yaml"), "--data.data_dir=data/tiny",
                "--data.source=null", "--trainer.accelerator=gpu", "--trainer.devices=1", "--data.block_size=16",
                "--model.n_layer=1", "--model.n_head=2", "--model.n_embd=16", "--trainer.logger=false",
            ],
            run=False,
        )  # fmt: skip
        assert touched == []
        assert cli.trainer.strategy.root_device == torch.device("cuda", 0)
        assert str(cli.trainer.precision) == "bf16-mixed"  # the preset leaves precision unset
        assert torch.get_float32_matmul_precision() == "high"  # TF32, set once the Trainer knew its device
        assert not torch.cuda.is_initialized()
    finally:
        torch.set_float32_matmul_precision(before)
