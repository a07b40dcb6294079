"""Throughput and MFU: FLOPs per token, the peak-FLOPs table, matmul precision and TF32, and the eager fallback
of torch.compile. The callback in a real fit: train/test_throughput_logging.py, e2e/test_throughput_cli.py."""

import warnings

import pytest
import torch

from gpt_lightning import hardware as throughput
from gpt_lightning.model import GPT, GPTConfig, flops_per_token, num_params
from gpt_lightning.train import throughput as throughput_callback
from gpt_lightning.train.module import GPTLightningModule

# ---------------------------------------------------------------- FLOPs per token


def test_flops_per_token_of_gpt2_small_is_the_palm_estimate():
    # GPT-2 124M as nanoGPT trains it (vocab padded to 50304): N = 123,689,472 parameters without the
    # position table (nanoGPT prints "123.69M"); 6N + 12 * L * H * Q * T with L=12, H=12, Q=64, T=1024.
    config = GPTConfig(vocab_size=50304, block_size=1024, n_layer=12, n_head=12, n_embd=768, bias=True)
    assert num_params(config) == 123_689_472
    assert flops_per_token(config) == 6 * 123_689_472 + 12 * 12 * 12 * 64 * 1024 == 855_383_040


def test_flops_per_token_of_a_tiny_model_by_hand():
    # 2 layers, 32 wide, 2 heads, no biases, vocab 65, block 16:
    # per layer 2 LayerNorms (2 x 32) + attention (32 x 96 + 32 x 32) + MLP (2 x 32 x 128) = 12,352;
    # two layers 24,704 + ln_f 32 + token table 65 x 32 = 2,080 -> N = 26,816.
    config = GPTConfig(vocab_size=65, block_size=16, n_layer=2, n_head=2, n_embd=32, bias=False)
    assert num_params(config) == 26_816
    assert flops_per_token(config) == 6 * 26_816 + 12 * 2 * 2 * 16 * 16 == 173_184


@pytest.mark.parametrize("bias", [True, False])
def test_num_params_from_the_config_matches_the_model(bias):
    config = GPTConfig(vocab_size=101, block_size=24, n_layer=3, n_head=4, n_embd=48, bias=bias)
    model = GPT(config)
    assert num_params(config) == model.get_num_params()
    assert num_params(config, non_embedding=False) == model.get_num_params(non_embedding=False)


# ---------------------------------------------------------------- peak FLOPs


@pytest.mark.parametrize(
    "name, precision, expected",
    [
        ("NVIDIA H100 80GB HBM3", "bf16", 989e12),
        ("NVIDIA H100 PCIe", "bf16", 756e12),
        ("NVIDIA H200", "bf16", 989e12),
        ("NVIDIA A100-SXM4-40GB", "tf32", 156e12),
        ("NVIDIA A100 80GB PCIe", "bf16", 312e12),
        ("NVIDIA A10G", "bf16", 125e12),  # not the A100
        ("NVIDIA L4", "fp16", 121e12),
        ("NVIDIA L40S", "bf16", 362e12),  # not the L4
        ("NVIDIA GeForce RTX 4090", "bf16", 165.2e12),
        ("NVIDIA GeForce RTX 3090", "fp32", 35.6e12),
        ("Tesla V100-SXM2-16GB", "fp16", 125e12),
        ("Tesla V100-PCIE-32GB", "fp16", 112e12),
        ("Tesla T4", "fp16", 65e12),
    ],
)
def test_peak_flops_of_known_devices(name, precision, expected):
    assert throughput.peak_flops(name, precision) == expected


@pytest.mark.parametrize(
    "name, precision",
    [
        ("cpu", "fp32"),
        ("mps", "fp32"),
        ("NVIDIA GeForce RTX 3090 Ti", "bf16"),  # a different card: unknown rather than a near guess
        ("Tesla T4", "bf16"),  # no bf16 tensor cores
        ("NVIDIA H100 80GB HBM3", None),  # a precision the table does not cover
    ],
)
def test_peak_flops_is_none_when_unknown(name, precision):
    assert throughput.peak_flops(name, precision) is None


def test_matmul_precision_of_trainer_precisions():
    cpu = torch.device("cpu")
    assert throughput.matmul_precision("bf16-mixed", cpu) == "bf16"
    assert throughput.matmul_precision("bf16-true", cpu) == "bf16"
    assert throughput.matmul_precision("16-mixed", cpu) == "fp16"
    assert throughput.matmul_precision("32-true", cpu) == "fp32"  # TF32 only on CUDA Ampere+
    assert throughput.matmul_precision("64-true", cpu) is None


# ---------------------------------------------------------------- torch.compile falls back to eager


def tiny_module(compile):
    return GPTLightningModule(vocab_size=17, block_size=8, n_layer=1, n_head=2, n_embd=16, compile=compile)


def test_compile_auto_stays_eager_on_cpu(monkeypatch):
    calls = []
    monkeypatch.setattr(torch, "compile", lambda *a, **k: calls.append(1))
    module = tiny_module("auto")
    module.configure_model()
    assert module.compiled is None and calls == []


def test_failed_compilation_falls_back_to_eager_with_one_warning(monkeypatch):
    def broken_compile(fn, *args, **kwargs):
        def compiled(*a, **k):
            raise RuntimeError("no C++ compiler found\nmore detail")

        return compiled

    monkeypatch.setattr(torch, "compile", broken_compile)
    module = tiny_module(True)
    module.configure_model()
    x = torch.randint(0, 17, (2, 8))
    with pytest.warns(UserWarning, match="torch.compile failed.*eager.*RuntimeError: no C\\+\\+ compiler found"):
        _, loss = module(x, x)
    assert torch.isfinite(loss)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no second warning
        _, again = module(x, x)
    assert torch.equal(loss, again)
    assert not any(k.startswith("_orig_mod") or "._orig_mod." in k for k in module.state_dict())


def test_compile_auto_follows_the_trainers_device_not_the_modules(monkeypatch):
    # Lightning calls configure_model before moving the module to the GPU: the strategy knows the device.
    class Strategy:
        root_device = torch.device("cuda", 0)

    class Trainer:
        strategy = Strategy()
        precision = "32-true"

    calls = []
    monkeypatch.setattr(torch, "compile", lambda model, *a, **k: calls.append(model))
    module = tiny_module("auto")
    module.trainer = Trainer()
    before = torch.get_float32_matmul_precision()
    try:
        module.configure_model()
    finally:
        torch.set_float32_matmul_precision(before)  # configure_model turned TF32 on for the "GPU"
    assert calls == [module.model]


def test_tf32_on_cuda_devices_only_and_without_asking_the_gpu(monkeypatch):
    def no_cuda(*args, **kwargs):
        raise AssertionError("enable_tf32 must not touch CUDA (it runs before strategies fork)")

    monkeypatch.setattr(torch.cuda, "get_device_capability", no_cuda)
    before = torch.get_float32_matmul_precision()
    try:
        torch.set_float32_matmul_precision("highest")
        throughput.enable_tf32(torch.device("cpu"))
        assert torch.get_float32_matmul_precision() == "highest"
        throughput.enable_tf32(torch.device("cuda", 0))  # a no-op for GPUs without TF32 (before Ampere)
        assert torch.get_float32_matmul_precision() == "high"
    finally:
        torch.set_float32_matmul_precision(before)


def test_pause_leaves_the_paused_time_out_of_the_window(monkeypatch):
    """Validation and HellaSwag evaluations pause the clock: the window's start moves by the time they took."""
    logger = throughput_callback.ThroughputLogger()
    logger._t0 = 100.0
    times = iter([130.0, 190.0])
    monkeypatch.setattr(logger, "_now", lambda pl_module: next(times))
    logger.pause(None)
    logger.resume(None)
    assert logger._t0 == 160.0
    logger._t0 = None  # rank != 0: nothing to pause
    logger.pause(None)
    logger.resume(None)
    assert logger._t0 is None
