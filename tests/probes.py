"""Test-only callbacks given to subprocess runs of the real CLI as `--trainer.callbacks` class paths
(helpers.subprocess_env puts this folder on PYTHONPATH). Kept out of helpers.py so that importing the helpers
does not import Lightning.

DDPProbe (e2e/test_ddp.py) records what each DDP rank saw and did, and writes one file per rank: the batches
drawn, the gradients and parameters at each optimizer step, the initial weights, and the validation loss (the
rank's own sum and count, and the value logged after the reduction over ranks). Throttle (e2e/test_signals.py)
slows a run down so that it can be signalled mid-run. PathProbe (train/test_gpu_paths_on_cpu.py, gpu/) records
which precision, autocast, optimizer and clipping paths a run really took.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Optional

import lightning as L
import torch


class DDPProbe(L.Callback):
    def __init__(self, out_dir: str) -> None:
        self.out_dir = Path(out_dir)
        self.record: dict = {"batches": [], "grads": [], "params_before_step": [], "val": []}

    def _params(self, pl_module) -> dict:
        return {n: p.detach().clone() for n, p in pl_module.model.named_parameters()}

    def on_train_start(self, trainer, pl_module) -> None:
        self.record["init"] = {k: v.clone() for k, v in pl_module.model.state_dict().items()}
        self.record["accumulate"] = trainer.accumulate_grad_batches
        self.record["world_size"] = trainer.world_size

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        x, y = batch
        self.record["batches"].append((x.clone(), y.clone()))

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        # after the backward of the last micro-batch, so DDP has averaged the gradients over ranks
        self.record["grads"].append({n: p.grad.detach().clone() for n, p in pl_module.model.named_parameters()})
        self.record["params_before_step"].append(self._params(pl_module))

    def on_validation_epoch_end(self, trainer, pl_module) -> None:
        # runs before the module's hook, so the metric still holds this rank's own, unreduced, state
        metric = pl_module.val_metrics["loss"]
        self.record["val"].append(
            {
                "local_sum": float(metric.mean_value),
                "local_count": float(metric.weight),
                "params": self._params(pl_module),
                "step": trainer.global_step,
                "sanity": trainer.sanity_checking,
            }
        )

    def on_validation_end(self, trainer, pl_module) -> None:
        # Lightning keeps no metric of its sanity check (the step-0 validation) in callback_metrics
        logged = trainer.callback_metrics.get("val/loss")
        self.record["val"][-1]["logged"] = None if logged is None else float(logged)

    def on_train_end(self, trainer, pl_module) -> None:
        self.record["final"] = self._params(pl_module)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        torch.save(self.record, self.out_dir / f"rank{trainer.global_rank}.pt")


class Throttle(L.Callback):
    """Slows a subprocess run down and reports its progress in a file, so a test can signal it mid-run."""

    def __init__(self, progress_file: str, seconds: float = 0.25) -> None:
        self.progress_file, self.seconds = Path(progress_file), seconds

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        tmp = self.progress_file.with_suffix(".tmp")
        tmp.write_text(f"{batch_idx + 1} {trainer.global_step}")
        os.replace(tmp, self.progress_file)
        time.sleep(self.seconds)


class PathProbe(L.Callback):
    """Records which code paths a real `fit` actually ran, so a test can assert more than "the loss fell".
    Give it on the command line:

        --trainer.callbacks+=probes.PathProbe --trainer.callbacks.out=FILE.json

    (with this folder on PYTHONPATH). At the end of training it writes FILE.json with:
      precision       the Trainer's precision, e.g. "bf16-mixed"
      autocast        {"enabled", "dtype"} as seen inside the GPT's forward during a training step (hook=True only)
      logits_dtype    dtype of the logits the GPT returned in that step
      optimizer       {"fused", "foreach"} as the AdamW was built
      scaler          the GradScaler's scale at the end, or None when there is none
      norms_before_clip  total gradient norm of each optimizer step before clipping (after GradScaler unscaling)
      norms_after_clip   the same after clipping, as the optimizer used them (read before the next zero_grad)
      losses          training loss of every batch
    """

    def __init__(self, out: str, hook: bool = True) -> None:
        """Args:
        out: the JSON file to write at the end of training.
        hook: look inside the GPT's forward (leave off for a compiled model: the hook would be traced).
        """
        self.out, self.hook = out, hook
        self.autocast: Optional[dict] = None
        self.logits_dtype: Optional[str] = None
        self.norms_before_clip: list[float] = []
        self.norms_after_clip: list[float] = []
        self.losses: list[float] = []
        self._handle = None

    def on_train_start(self, trainer, pl_module) -> None:
        device_type = pl_module.device.type
        if self.hook:

            def record(module, args, output) -> None:
                if module.training and self.autocast is None:
                    self.autocast = {
                        "enabled": torch.is_autocast_enabled(device_type),
                        "dtype": str(torch.get_autocast_dtype(device_type)),
                    }
                    self.logits_dtype = str(output[0].dtype)

            self._handle = pl_module.model.register_forward_hook(record)

    @staticmethod
    def _norm(optimizer) -> Optional[float]:
        grads = [p.grad for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
        return float(torch.linalg.vector_norm(torch.stack([g.float().norm() for g in grads]))) if grads else None

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        # Lightning calls this after the backward (and the GradScaler's unscale_), before clipping
        self.norms_before_clip.append(self._norm(optimizer))

    def on_before_zero_grad(self, trainer, pl_module, optimizer) -> None:
        # the gradients the last optimizer step used, clipped; the first call has none yet
        norm = self._norm(optimizer)
        if norm is not None:
            self.norms_after_clip.append(norm)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.losses.append(float(outputs["loss"]))

    def on_train_end(self, trainer, pl_module) -> None:
        if self._handle is not None:
            self._handle.remove()
        optimizer = trainer.optimizers[0]
        scaler = getattr(trainer.precision_plugin, "scaler", None)
        result = {
            "precision": str(trainer.precision),
            "autocast": self.autocast,
            "logits_dtype": self.logits_dtype,
            "optimizer": {k: optimizer.defaults.get(k) for k in ("fused", "foreach")},
            "scaler": None if scaler is None else float(scaler.get_scale()),
            "norms_before_clip": self.norms_before_clip,
            "norms_after_clip": self.norms_after_clip,
            "losses": self.losses,
        }
        with open(self.out, "w") as f:
            json.dump(result, f)


class SlowValidation(L.Callback):
    """Makes validation inside `fit` slow and says in a file when it is under way, so a test can signal a run while
    it validates."""

    def __init__(self, progress_file: str, seconds: float = 0.1, sanity_check_too: bool = False) -> None:
        self.progress_file, self.seconds, self.sanity_check_too = Path(progress_file), seconds, sanity_check_too

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        if trainer.sanity_checking and not self.sanity_check_too:
            return
        tmp = self.progress_file.with_suffix(".tmp")
        tmp.write_text(f"validating {trainer.global_step} {batch_idx + 1}")
        os.replace(tmp, self.progress_file)
        time.sleep(self.seconds)
