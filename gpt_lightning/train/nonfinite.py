"""Non-finite losses: notice them without a host sync per step, and never save a model that has gone NaN."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Optional

import torch
from lightning.pytorch.utilities import rank_zero_warn

from gpt_lightning.errors import UserError


class NonFiniteLossError(UserError):
    pass


class NonFiniteTracker:
    """Remembers, on the loss's device, the first step whose loss was not finite, and whether any micro-batch
    of the current optimizer step was. Updating is a couple of tiny kernels; only asking costs a host sync."""

    def __init__(self) -> None:
        self.first_bad_step: Optional[torch.Tensor] = None  # () long, -1 while every loss was finite
        self.step_bad: Optional[torch.Tensor] = None  # () bool, any non-finite loss since the last optimizer step

    def update(self, loss: torch.Tensor, step: int) -> None:
        bad = ~torch.isfinite(loss.detach())
        if self.first_bad_step is None or self.first_bad_step.device != loss.device:
            self.first_bad_step = torch.full((), -1, dtype=torch.long, device=loss.device)
            self.step_bad = torch.zeros((), dtype=torch.bool, device=loss.device)
        # a Python int as the other branch is a kernel argument, not a host-to-device copy
        self.first_bad_step = torch.where(bad & (self.first_bad_step < 0), step, self.first_bad_step)
        self.step_bad = self.step_bad | bad

    def take_step_bad(self) -> bool:
        """Whether the optimizer step about to run saw a non-finite loss (host sync); resets the flag."""
        if self.step_bad is None:
            return False
        bad = bool(self.step_bad)
        self.step_bad = torch.zeros_like(self.step_bad)
        return bad

    def raise_if_seen(self, what: str = "training loss") -> None:
        """Stop with a message naming the first step whose loss was not finite (host sync)."""
        if self.first_bad_step is not None and (step := int(self.first_bad_step)) >= 0:
            raise NonFiniteLossError(
                f"The {what} became NaN or infinite at step {step}; lower --model.learning_rate or raise "
                "--model.warmup_steps, set --trainer.gradient_clip_val, resume from an earlier checkpoint, or "
                "set --model.on_nonfinite_loss skip to skip such steps."
            )

    def reset_seen(self) -> None:
        """Forget a non-finite loss that was handled (a skipped step)."""
        if self.first_bad_step is not None:
            self.first_bad_step.fill_(-1)


def check_finite_parameters(parameters: Iterable[torch.Tensor], step: int) -> None:
    """Refuse to save weights that are not finite: a NaN model must never replace a good checkpoint."""
    flags = [torch.isfinite(p.detach()).all() for p in parameters if p.is_floating_point() and p.numel()]
    if flags and not bool(torch.stack(flags).all()):
        raise NonFiniteLossError(
            f"The model's weights are NaN or infinite at step {step}, so no checkpoint was written; resume from "
            "an earlier checkpoint with a lower --model.learning_rate or with --trainer.gradient_clip_val set."
        )


class NonFinitePolicy:
    """--model.on_nonfinite_loss, as the LightningModule's hooks apply it: `stop` raises (at points where a host
    sync is cheap, see `after_batch`), `skip` drops the optimizer step whose loss was not finite."""

    def __init__(self, action: str) -> None:
        self.action = action
        self.tracker = NonFiniteTracker()

    def update(self, loss: torch.Tensor, step: int) -> None:
        """After each training micro-batch: remember the loss on its device (no host sync)."""
        self.tracker.update(loss, step)

    def after_batch(self, trainer, batch_idx: int, device: torch.device) -> None:
        """`stop`: check every micro-batch on CPU (a sync costs nothing there), elsewhere at the optimizer steps
        the Trainer logs at; the check before each checkpoint catches the rest."""
        if self.action != "stop":
            return
        step_done = (batch_idx + 1) % trainer.accumulate_grad_batches == 0
        if device.type == "cpu" or (step_done and trainer.global_step % trainer.log_every_n_steps == 0):
            self.tracker.raise_if_seen()

    def before_optimizer_step(self, trainer, optimizer: torch.optim.Optimizer) -> None:
        """`skip`: an optimizer step that saw a non-finite loss changes nothing (one host sync per step)."""
        if self.action == "skip" and self.tracker.take_step_bad():
            self.tracker.reset_seen()
            rank_zero_warn(f"Skipped optimizer step {trainer.global_step}: its training loss was NaN or infinite.")
            if "16-mixed" != str(trainer.precision):  # under 16-mixed the GradScaler skips it already
                optimizer.zero_grad(set_to_none=True)  # AdamW leaves parameters without a gradient untouched

    def before_save(self, parameters: Iterable[torch.Tensor], step: int) -> None:
        """Never write a checkpoint after a non-finite loss (`stop`) or of non-finite weights (either policy)."""
        if self.action == "stop":
            self.tracker.raise_if_seen()
        check_finite_parameters(parameters, step)


def check_validation_loss(loss: torch.Tensor, step: int) -> None:
    """Stop on a non-finite validation loss, before it is logged: a NaN model must never be ranked by the
    best-checkpoint callback."""
    if not torch.isfinite(loss):
        raise NonFiniteLossError(
            f"The validation loss is {loss.item()} at step {step}: the model's weights have gone NaN or infinite; "
            "resume from an earlier checkpoint with a lower --model.learning_rate."
        )
