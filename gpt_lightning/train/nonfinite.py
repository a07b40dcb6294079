"""Non-finite losses: notice them without a host sync per step, and never save a model that has gone NaN."""

from __future__ import annotations

from typing import Iterable, Optional

import torch

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
