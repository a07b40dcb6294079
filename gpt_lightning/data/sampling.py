"""Sampling without replacement (`--data.sampling epoch`): each training window exactly once per epoch.

nanoGPT draws every window start uniformly at random (`random`, the default here too), so a long run sees some
windows many times and others never. With `epoch`, the train split of n tokens is cut into
W = n // T - 1 non-overlapping windows of T = block_size tokens. Epoch e starts them at a phase offset o_e,
random in [0, T), so window borders move from epoch to epoch, and visits them in a fresh random order:

    start of the i-th window of epoch e = o_e + perm_e[i] * T          (the last one ends before token n)

The stream is the epochs one after another, counted in windows over all ranks together: global window g is
window g % W of epoch g // W. Micro-batch k of rank r takes global windows (k * world + r) * B ... + B - 1,
so ranks never share a window within an epoch, a batch may straddle two epochs, and batch k is a pure
function of (seed, world size, rank, k), like the random stream: resuming only needs the position, which the
DataModule keeps in the checkpoint as (epoch, index).
"""

from __future__ import annotations

import lightning as L
import numpy as np

from gpt_lightning.errors import UserError

SAMPLINGS = ("random", "epoch")


class EpochSampler:
    """Window starts of the epoch stream of one rank (see the module docstring)."""

    def __init__(self, n_tokens: int, block_size: int, batch_size: int, seed: int, rank: int = 0, world_size: int = 1):
        self.n_windows = n_tokens // block_size - 1  # (W + 1) * T <= n: the last window's target fits
        if self.n_windows < batch_size * world_size:
            raise UserError(
                f"--data.sampling epoch: the train split ({n_tokens:,} tokens) holds only {max(self.n_windows, 0)} "
                f"windows of block_size {block_size}, fewer than one batch on every rank ({batch_size} x "
                f"{world_size}); use more data, a smaller batch or block, or --data.sampling random."
            )
        self.block_size, self.batch_size, self.seed = block_size, batch_size, seed
        self.rank, self.world_size = rank, world_size
        self._cached: tuple[int, int, np.ndarray] = (-1, 0, np.empty(0, dtype=np.int64))

    def epoch_order(self, epoch: int) -> tuple[int, np.ndarray]:
        """(phase offset, order of the windows) of one epoch; the same for every rank."""
        if self._cached[0] != epoch:
            rng = np.random.default_rng([self.seed, epoch, 0xE90C])  # not one of the random stream's seeds
            offset = int(rng.integers(0, self.block_size))
            self._cached = (epoch, offset, rng.permutation(self.n_windows))
        return self._cached[1], self._cached[2]

    def first_window(self, k: int) -> int:
        """Global window index of the first window of this rank's micro-batch k."""
        return (k * self.world_size + self.rank) * self.batch_size

    def starts(self, first: int, count: int) -> np.ndarray:
        """Token starts of global windows first ... first + count - 1."""
        out = np.empty(count, dtype=np.int64)
        for j, g in enumerate(range(first, first + count)):
            epoch, index = divmod(g, self.n_windows)
            offset, order = self.epoch_order(epoch)
            out[j] = offset + order[index] * self.block_size
        return out

    def batch_starts(self, k: int, n_tokens: int) -> np.ndarray:
        return self.starts(self.first_window(k), self.batch_size)

    def position(self, batches_consumed: int) -> dict:
        """(epoch, index) of the next window once every rank consumed `batches_consumed` micro-batches."""
        epoch, index = divmod(batches_consumed * self.world_size * self.batch_size, self.n_windows)
        return {"epoch": epoch, "index": index}

    def batches_consumed(self, position: dict) -> int:
        """The micro-batch index at which a stream stopped at `position` goes on (exact on the same world size
        and batch size; otherwise the first batch that starts at or after it)."""
        g = position["epoch"] * self.n_windows + position["index"]
        per_batch = self.world_size * self.batch_size
        return -(-g // per_batch)


def epochs_seen(windows: int, n_tokens: int, block_size: int, sampling: str) -> float:
    """Epochs of the train split that `windows` windows amount to: exact for `epoch` sampling; tokens seen over
    tokens in the split for `random`."""
    if sampling == "epoch":
        return windows / (n_tokens // block_size - 1)
    return windows * block_size / n_tokens


class EpochMonitor(L.Callback):
    """Logs `train/epoch`, how many passes over the train split the run has made, at the Trainer's logging
    cadence (the DataModule knows the split and the sampling; this only asks it)."""

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        every = trainer.log_every_n_steps
        step_done = (batch_idx + 1) % trainer.accumulate_grad_batches == 0
        data = trainer.datamodule
        if not (every and step_done and trainer.global_step % every == 0 and hasattr(data, "epochs_seen")):
            return
        for logger in trainer.loggers:
            logger.log_metrics({"train/epoch": data.epochs_seen(trainer.global_step)}, step=trainer.global_step)
