"""Learning-rate schedules: each one function of the optimizer step, named by `--model.lr_schedule`.

A schedule returns the learning rate of step `step` (optimizer steps done before it, from 0) for a peak
`learning_rate`; every param group gets its own peak times the same factor (schedule / learning_rate), so
Muon's group follows AdamW's. To add one: write a function like these and add it to SCHEDULES.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Literal

import torch

from gpt_lightning.errors import UserError


@dataclass(frozen=True)
class ScheduleSettings:
    """How the learning rate moves over the run.

    Attributes:
        lr_schedule: `cosine`: nanoGPT's linear warmup then cosine decay to min_lr at lr_decay_steps, then flat.
            `wsd`: warmup, stable at the peak, then a linear decay to min_lr over the last decay_fraction of
            lr_decay_steps (modded-nanogpt, nanochat; a run can be continued from before the decay). `constant`:
            the peak learning rate throughout, no warmup (nanoGPT's finetuning; replaces decay_lr false).
        min_lr: learning rate at and after lr_decay_steps (about learning_rate / 10).
        warmup_steps: optimizer steps of linear warmup.
        lr_decay_steps: optimizer step at which the decay reaches min_lr (usually max_steps).
        decay_fraction: with `wsd`, the share of lr_decay_steps spent decaying (0.2: the last 20%).
        decay_lr: False is `--model.lr_schedule constant` (kept for nanoGPT's configs).
    """

    lr_schedule: Literal["cosine", "wsd", "constant"] = "cosine"
    min_lr: float = 6e-5
    warmup_steps: int = 2000
    lr_decay_steps: int = 600000
    decay_fraction: float = 0.2
    decay_lr: bool = True

    def __post_init__(self) -> None:
        if self.lr_schedule not in SCHEDULES:
            raise UserError(f"--model.lr_schedule must be one of {', '.join(SCHEDULES)}, got {self.lr_schedule!r}.")
        if self.min_lr < 0 or self.warmup_steps < 0 or self.lr_decay_steps < 0:
            raise UserError(
                "--model.min_lr, --model.warmup_steps and --model.lr_decay_steps must be >= 0, got "
                f"{self.min_lr}, {self.warmup_steps} and {self.lr_decay_steps}."
            )
        if not 0.0 < self.decay_fraction <= 1.0:
            raise UserError(f"--model.decay_fraction must be in (0, 1], got {self.decay_fraction}.")

    @property
    def name(self) -> str:
        """The schedule in effect: decay_lr false means constant, whatever lr_schedule says."""
        return self.lr_schedule if self.decay_lr else "constant"

    def lr(self, step: int, learning_rate: float) -> float:
        return SCHEDULES[self.name](step, learning_rate, self)

    def scheduler(self, optimizer: torch.optim.Optimizer, learning_rate: float, last_epoch: int = -1):
        """A LambdaLR scaling every param group's peak by this schedule (None for `constant`)."""
        if self.name == "constant":
            return None

        def factor(step: int) -> float:  # each group's peak times this (a learning rate of 0 stays 0)
            return self.lr(step, learning_rate) / learning_rate if learning_rate else 0.0

        return torch.optim.lr_scheduler.LambdaLR(optimizer, factor, last_epoch=last_epoch)


def lr_at(step: int, learning_rate: float, warmup_steps: int, lr_decay_steps: int, min_lr: float) -> float:
    """nanoGPT's get_lr: linear warmup to learning_rate, cosine decay to min_lr at lr_decay_steps, then flat.
    The first step already has a non-zero LR."""
    if step < warmup_steps:
        return learning_rate * (step + 1) / (warmup_steps + 1)
    if step > lr_decay_steps or lr_decay_steps <= warmup_steps:
        return min_lr
    decay_ratio = (step - warmup_steps) / (lr_decay_steps - warmup_steps)
    coeff = 0.5 * (1.0 + math.cos(math.pi * decay_ratio))  # 1 -> 0
    return min_lr + coeff * (learning_rate - min_lr)


def cosine(step: int, learning_rate: float, s: ScheduleSettings) -> float:
    return lr_at(step, learning_rate, s.warmup_steps, s.lr_decay_steps, s.min_lr)


def wsd(step: int, learning_rate: float, s: ScheduleSettings) -> float:
    """Warmup (as cosine's), stable at the peak, then linear to min_lr over the last decay_fraction of
    lr_decay_steps, then flat."""
    if step < s.warmup_steps:
        return learning_rate * (step + 1) / (s.warmup_steps + 1)
    decay_start = max(s.warmup_steps, round(s.lr_decay_steps * (1.0 - s.decay_fraction)))
    if step < decay_start:
        return learning_rate
    if step >= s.lr_decay_steps:
        return s.min_lr
    remaining = (s.lr_decay_steps - step) / (s.lr_decay_steps - decay_start)  # 1 -> 0
    return s.min_lr + remaining * (learning_rate - s.min_lr)


def constant(step: int, learning_rate: float, s: ScheduleSettings) -> float:
    return learning_rate


SCHEDULES: dict[str, Callable[[int, float, ScheduleSettings], float]] = {
    "cosine": cosine,
    "wsd": wsd,
    "constant": constant,
}
