"""A callback for tests that run the real `fit`: it records which code paths actually ran, so a test can assert
more than "the loss went down". Give it on the command line:

    --trainer.callbacks+=path_probe.PathProbe --trainer.callbacks.out=FILE.json

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

from __future__ import annotations

import json
from typing import Optional

import torch
from lightning.pytorch import Callback


class PathProbe(Callback):
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
