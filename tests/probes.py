"""Test-only callbacks given to subprocess runs of the real CLI as `--trainer.callbacks` class paths
(helpers.subprocess_env puts this folder on PYTHONPATH). Kept out of helpers.py so that importing the helpers
does not import Lightning.

DDPProbe (e2e/test_ddp.py) records what each DDP rank saw and did, and writes one file per rank: the batches
drawn, the gradients and parameters at each optimizer step, the initial weights, and the validation loss (the
rank's own sum and count, and the value logged after the reduction over ranks). Throttle (e2e/test_signals.py)
slows a run down so that it can be signalled mid-run.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

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
        metric = pl_module.val_loss
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
        self.record["val"][-1]["logged"] = float(trainer.callback_metrics["val/loss"])

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
