"""Tokens per second and model FLOPs utilisation (MFU), logged while training.

MFU = (FLOPs per token x tokens per second) / (peak FLOPs of the devices). FLOPs per token come from the
model's shape (`model.flops_per_token`, PaLM's estimate); peak FLOPs from the table below, by device name and
the precision the matmuls run in. A device that is not in the table gets tokens/s only: its MFU is reported
as unknown, never guessed.
"""

from __future__ import annotations

import re
import time
from typing import Optional

import lightning as L
import torch
from lightning.pytorch.utilities import rank_zero_info, rank_zero_only

from gpt_lightning.model import GPTConfig, flops_per_token

# Dense (no sparsity) peak tensor FLOP/s per device, from the vendors' datasheets, keyed by the precision the
# matmuls run in: "fp32" (plain), "tf32" (fp32 tensors on tensor cores), "bf16", "fp16" (with fp32
# accumulation, which is what autocast does). A missing key means the device has no fast path for it.
# Lightning has a similar table (lightning.fabric.utilities.throughput), but it lists H200 and H100 NVL with
# sparsity (2x too high) and misses plain "NVIDIA H200", so we keep our own.
PEAK_FLOPS: dict[str, dict[str, float]] = {
    "H200 NVL": {"fp32": 60e12, "tf32": 418e12, "bf16": 835e12, "fp16": 835e12},
    "H200": {"fp32": 67e12, "tf32": 495e12, "bf16": 989e12, "fp16": 989e12},  # SXM
    "H100 NVL": {"fp32": 60e12, "tf32": 418e12, "bf16": 835e12, "fp16": 835e12},
    "H100 PCIe": {"fp32": 51e12, "tf32": 378e12, "bf16": 756e12, "fp16": 756e12},
    "H100": {"fp32": 67e12, "tf32": 495e12, "bf16": 989e12, "fp16": 989e12},  # SXM ("H100 80GB HBM3")
    "A100": {"fp32": 19.5e12, "tf32": 156e12, "bf16": 312e12, "fp16": 312e12},
    "L40S": {"fp32": 91.6e12, "tf32": 183e12, "bf16": 362e12, "fp16": 362e12},
    "L4": {"fp32": 30.3e12, "tf32": 60e12, "bf16": 121e12, "fp16": 121e12},
    "A10G": {"fp32": 31.2e12, "tf32": 62.5e12, "bf16": 125e12, "fp16": 125e12},  # as the A10 datasheet
    "A10": {"fp32": 31.2e12, "tf32": 62.5e12, "bf16": 125e12, "fp16": 125e12},
    "RTX 4090": {"fp32": 82.6e12, "tf32": 82.6e12, "bf16": 165.2e12, "fp16": 165.2e12},
    "RTX 3090": {"fp32": 35.6e12, "tf32": 35.6e12, "bf16": 71e12, "fp16": 71e12},
    "V100 PCIe": {"fp32": 14e12, "fp16": 112e12},
    "V100": {"fp32": 15.7e12, "fp16": 125e12},  # SXM2
    "T4": {"fp32": 8.1e12, "fp16": 65e12},
}

# How torch.cuda.get_device_name spells them ("NVIDIA H100 80GB HBM3", "NVIDIA A100-SXM4-40GB",
# "Tesla V100-PCIE-16GB", "NVIDIA GeForce RTX 4090"): first match wins, so variants come before the plain
# name, and word boundaries keep "A10" from matching "A100" and "L4" from matching "L40S".
_NAME_PATTERNS: list[tuple[str, str]] = [
    (r"\bH200\b.*\bNVL\b", "H200 NVL"),
    (r"\bH200\b", "H200"),
    (r"\bH100\b.*\bNVL\b", "H100 NVL"),
    (r"\bH100\b.*\bPCIe\b", "H100 PCIe"),
    (r"\bH100\b", "H100"),
    (r"\bA100\b", "A100"),
    (r"\bL40S\b", "L40S"),
    (r"\bL4\b", "L4"),
    (r"\bA10G\b", "A10G"),
    (r"\bA10\b", "A10"),
    (r"\bRTX 4090\b(?! ?(Ti|D)\b)", "RTX 4090"),
    (r"\bRTX 3090\b(?! ?Ti\b)", "RTX 3090"),
    (r"\bV100S?\b.*\bPCIE\b", "V100 PCIe"),
    (r"\bV100\b", "V100"),
    (r"\bT4\b", "T4"),
]


def matmul_precision(precision: str, device: Optional[torch.device] = None) -> Optional[str]:
    """The number format the matmuls run in under a Trainer `precision` ("bf16-mixed" -> "bf16"); fp32 runs
    on TF32 tensor cores on Ampere and newer GPUs when the float32 matmul precision allows it. None for
    formats the table does not cover (64-bit, transformer-engine, ...)."""
    p = str(precision)
    if p.startswith("bf16"):
        return "bf16"
    if p.startswith("16"):
        return "fp16"
    if p.startswith("32"):
        tf32 = (
            device is not None
            and device.type == "cuda"
            and torch.cuda.get_device_capability(device)[0] >= 8
            and torch.get_float32_matmul_precision() != "highest"
        )
        return "tf32" if tf32 else "fp32"
    return None


def peak_flops(device_name: str, precision: Optional[str]) -> Optional[float]:
    """Peak FLOP/s of one device from its name (as torch.cuda.get_device_name gives it) and a matmul
    precision ("fp32", "tf32", "bf16", "fp16"); None when the device or the precision is not in the table."""
    for pattern, key in _NAME_PATTERNS:
        if re.search(pattern, device_name, flags=re.IGNORECASE):
            return PEAK_FLOPS[key].get(precision) if precision else None
    return None


def device_name(device: torch.device) -> str:
    return torch.cuda.get_device_name(device) if device.type == "cuda" else device.type


def enable_tf32(device: Optional[torch.device] = None) -> None:
    """Let fp32 matmuls use TF32 tensor cores on Ampere and newer GPUs (about 8x their fp32 rate, with a
    10-bit mantissa that training does not notice); mixed precision is unaffected. No-op elsewhere.
    A per-process setting: the CLI sets it before the Trainer exists (which keeps Lightning's tensor-core
    hint quiet), the module again in configure_model, which runs in every training process."""
    if device is None:
        device = torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")
    if device.type == "cuda" and torch.cuda.get_device_capability(device)[0] >= 8:
        torch.set_float32_matmul_precision("high")


class ThroughputLogger(L.Callback):
    """Logs `perf/tokens_per_sec` and `perf/mfu` to the loggers, measured over windows of optimizer steps
    with wall time, and prints them to the console now and then.

    Cheap by design: per step it only adds up the batch's token count (a shape, no device sync); the clock is
    read, after a CUDA synchronize, once per window. Validation is left out of the windows.
    """

    def __init__(self, window: Optional[int] = None, print_every_n_steps: int = 500) -> None:
        """Args:
        window: optimizer steps per measurement (None: the Trainer's log_every_n_steps).
        print_every_n_steps: print tokens/s and MFU to the console every this many optimizer steps (0: never).
        """
        self.window, self.print_every_n_steps = window, print_every_n_steps
        self.flops_per_token: Optional[int] = None
        self.peak: Optional[float] = None  # FLOP/s of all devices together
        self._t0: Optional[float] = None  # wall time at the start of the window
        self._tokens = 0  # tokens this rank trained on since then
        self._step0: Optional[int] = None  # global_step at the start of the window
        self._paused_at: Optional[float] = None

    def _window(self, trainer: L.Trainer) -> int:
        # log_every_n_steps=0 turns Lightning's step logging off; measure over 50 steps then, never every step
        return max(self.window or trainer.log_every_n_steps or 50, 1)

    def _now(self, pl_module: L.LightningModule) -> float:
        if pl_module.device.type == "cuda":
            torch.cuda.synchronize(pl_module.device)  # time the work done, not the work queued
        return time.perf_counter()

    @rank_zero_only
    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        config = getattr(pl_module, "config", None)
        self.flops_per_token = flops_per_token(config) if isinstance(config, GPTConfig) else None
        devices = trainer.world_size  # (the CLI has printed the tokens per optimizer step already)
        name, fmt = device_name(pl_module.device), matmul_precision(trainer.precision, pl_module.device)
        per_device = peak_flops(name, fmt)
        self.peak = per_device * devices if per_device else None
        if self.flops_per_token is None:
            rank_zero_info("MFU: unknown (the model is not a GPT with a GPTConfig); logging tokens/s only")
        elif self.peak is None:
            rank_zero_info(
                f"MFU: unknown, no peak FLOPs for {name!r} at {fmt or trainer.precision} in "
                "gpt_lightning.throughput.PEAK_FLOPS; logging tokens/s only"
            )
        else:
            rank_zero_info(
                f"MFU: {self.flops_per_token / 1e6:,.1f} MFLOPs per token (PaLM estimate) against "
                f"{per_device / 1e12:g} TFLOP/s peak per device ({name}, {fmt})"
            )

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if self._t0 is None and trainer.is_global_zero:
            self._t0, self._step0, self._tokens = self._now(pl_module), trainer.global_step, 0

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self._t0 is None:  # not rank 0
            return
        x = batch[0] if isinstance(batch, (tuple, list)) else batch
        self._tokens += x.numel()  # a shape: no device sync
        window = self._window(trainer)
        step = trainer.global_step  # counts optimizer steps: unchanged between accumulation micro-batches
        if step == self._step0 or step % window:
            return
        now = self._now(pl_module)
        tokens_per_sec = self._tokens * trainer.world_size / (now - self._t0)  # every rank trains alike
        self._t0, self._step0, self._tokens = now, step, 0
        self._report(trainer, tokens_per_sec)

    @rank_zero_only
    def _report(self, trainer: L.Trainer, tokens_per_sec: float) -> None:
        metrics = {"perf/tokens_per_sec": tokens_per_sec}
        if self.peak and self.flops_per_token:
            metrics["perf/mfu"] = self.flops_per_token * tokens_per_sec / self.peak
        for logger in trainer.loggers:
            # step index as Lightning's own step metrics (train/loss, lr) use for the step just taken
            logger.log_metrics(metrics, step=trainer.global_step - 1)
        step = trainer.global_step
        if self.print_every_n_steps and step % self.print_every_n_steps < self._window(trainer):
            mfu = f"{metrics['perf/mfu']:.1%}" if "perf/mfu" in metrics else "unknown"
            line = f"step {step}: {tokens_per_sec:,.0f} tokens/s, MFU {mfu}"
            bar = trainer.progress_bar_callback
            if bar is not None and bar.is_enabled:
                bar.print(line)  # above the bar, not through it
            else:
                print(line)

    def on_validation_start(self, trainer, pl_module) -> None:
        if self._t0 is not None:
            self._paused_at = self._now(pl_module)

    def on_validation_end(self, trainer, pl_module) -> None:
        # leave validation (and the text sample) out of the window: move its start by the time they took
        if self._t0 is not None and self._paused_at is not None:
            self._t0 += self._now(pl_module) - self._paused_at
        self._paused_at = None
