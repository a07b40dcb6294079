"""Tokens per second and model FLOPs utilisation (MFU), logged while training.

MFU = (FLOPs per token x tokens per second) / (peak FLOPs of the devices). FLOPs per token come from the
model's shape (`model.flops_per_token`, PaLM's estimate); peak FLOPs from `hardware.PEAK_FLOPS`, by device name and
the precision the matmuls run in. A device that is not in the table gets tokens/s only: its MFU is reported
as unknown, never guessed.
"""

from __future__ import annotations

import time
from typing import Optional

import lightning as L
import torch
from lightning.pytorch.utilities import rank_zero_info, rank_zero_only

from gpt_lightning.hardware import device_name, matmul_precision, peak_flops
from gpt_lightning.model import GPTConfig, flops_per_token


class ThroughputLogger(L.Callback):
    """Logs `perf/tokens_per_sec` and `perf/mfu` to the loggers, measured over windows of optimizer steps
    with wall time, and prints them to the console now and then.

    Cheap by design: per step it only adds up the batch's token count (a shape, no device sync); the clock is
    read, after a CUDA synchronize, once per window. Validation is left out of the windows.
    """

    def __init__(self, window: Optional[int] = None, print_every_n_steps: int = 0) -> None:
        """Tokens per second and MFU while training (perf/tokens_per_sec, perf/mfu).

        Args:
            window: optimizer steps per measurement (None: the Trainer's log_every_n_steps).
            print_every_n_steps: also print tokens/s and MFU on a line of their own every this many optimizer steps
                (0: never; the console shows both at every logging step, train/console.py).
        """
        self.window, self.print_every_n_steps = window, print_every_n_steps
        self.flops_per_token: Optional[int] = None
        self.peak: Optional[float] = None  # FLOP/s of all devices together
        self._t0: Optional[float] = None  # wall time at the start of the window
        self._tokens = 0  # tokens this rank trained on since then
        self._step0: Optional[int] = None  # global_step at the start of the window
        self._paused_at: Optional[float] = None
        self.latest: Optional[tuple[int, float, Optional[float]]] = None  # (step, tokens/s, MFU) of the last window

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
                "gpt_lightning.hardware.PEAK_FLOPS; logging tokens/s only"
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
        self.latest = (trainer.global_step, tokens_per_sec, metrics.get("perf/mfu"))  # for the console
        for logger in trainer.loggers:
            # optimizer steps done, the step every scalar and checkpoint name uses
            logger.log_metrics(metrics, step=trainer.global_step)
        step = trainer.global_step
        if self.print_every_n_steps and step % self.print_every_n_steps < self._window(trainer):
            mfu = f"{metrics['perf/mfu']:.1%}" if "perf/mfu" in metrics else "unknown"
            line = f"step {step}: {tokens_per_sec:,.0f} tokens/s, MFU {mfu}"
            bar = trainer.progress_bar_callback
            if bar is not None and bar.is_enabled:
                bar.print(line)  # above the bar, not through it
            else:
                print(line)

    def pause(self, pl_module: L.LightningModule) -> None:
        """Stop the clock: what runs until resume() (validation, an evaluation) is no training time."""
        if self._t0 is not None:
            self._paused_at = self._now(pl_module)

    def resume(self, pl_module: L.LightningModule) -> None:
        # leave the pause out of the window: move its start by the time the pause took
        if self._t0 is not None and self._paused_at is not None:
            self._t0 += self._now(pl_module) - self._paused_at
        self._paused_at = None

    def on_validation_start(self, trainer, pl_module) -> None:
        self.pause(pl_module)

    def on_validation_end(self, trainer, pl_module) -> None:
        self.resume(pl_module)  # validation and the text sample are not training
