"""What keeps a long run's work safe when it is stopped: atomic checkpoint files and stopping at a step boundary.

- `AtomicCheckpointIO`: a checkpoint is written to a temporary file in its own folder, fsynced and renamed into
  place, so a kill at any moment leaves the previous `last.ckpt` intact (Lightning's own writer stages the file in
  the system temp dir and moves it, which is a copy, not a rename, when /tmp is another file system).
- `StopRequest`: the first SIGINT (Ctrl-C) or SIGTERM (preemption) only asks the run to stop; `LastCheckpoint`
  finishes the current optimizer step, saves `last.ckpt` and exits with status 128 + signal number. Stopping at a
  step boundary is what makes the saved state exact: a micro-batch's gradients are never saved, so a checkpoint
  taken in the middle of gradient accumulation could not be resumed exactly.
"""

from __future__ import annotations

import signal
import sys
import threading
from typing import Any, Optional

import torch
from fsspec.implementations.local import LocalFileSystem
from lightning.fabric.utilities.cloud_io import get_filesystem
from lightning.pytorch.plugins.io import TorchCheckpointIO

from gpt_lightning.errors import UserError, caused_by_full_disk, disk_full_message, free_space
from gpt_lightning.files import atomic_write

# ------------------------------------------------------------ atomic checkpoint files


class AtomicCheckpointIO(TorchCheckpointIO):
    """torch.save through files.atomic_write (a temporary beside the target, fsync, os.replace): readers (and a
    resume after SIGKILL or a full disk) only ever see a complete old or a complete new checkpoint."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options: Optional[Any] = None) -> None:
        if storage_options is not None or not isinstance(get_filesystem(path), LocalFileSystem):
            return super().save_checkpoint(checkpoint, path, storage_options)  # remote: Lightning's way
        try:
            with atomic_write(path) as f:
                torch.save(checkpoint, f)
        except Exception as e:  # torch reports a full disk as "unexpected pos ...", its OSError as the context
            needed = checkpoint_bytes(checkpoint)
            free = free_space(path)
            if caused_by_full_disk(e) or (free is not None and free < needed):
                raise UserError(disk_full_message(path, needed)) from e
            raise


def checkpoint_bytes(checkpoint: Any) -> int:
    """Bytes of the tensors in a checkpoint: about the size of its file."""
    if isinstance(checkpoint, torch.Tensor):
        return checkpoint.nelement() * checkpoint.element_size()
    if isinstance(checkpoint, dict):
        return sum(checkpoint_bytes(v) for v in checkpoint.values())
    if isinstance(checkpoint, (list, tuple)):
        return sum(checkpoint_bytes(v) for v in checkpoint)
    return 0


def with_atomic_checkpoint_io(plugins: Any) -> list:
    """The Trainer's plugins plus AtomicCheckpointIO, unless the user chose a CheckpointIO of their own."""
    from lightning.fabric.plugins import CheckpointIO

    plugins = [] if plugins is None else list(plugins) if isinstance(plugins, (list, tuple)) else [plugins]
    if not any(isinstance(p, CheckpointIO) for p in plugins):
        plugins.append(AtomicCheckpointIO())
    return plugins


# ------------------------------------------------------------ SIGINT / SIGTERM: stop at the next step boundary


class TrainingInterrupted(SystemExit):
    """Raised at an optimizer-step boundary after last.ckpt was saved; exits with status 128 + signal number."""

    def __init__(self, signum: int) -> None:
        super().__init__(128 + signum)
        self.signum = signum


class StopRequest:
    """Turns the first SIGINT or SIGTERM into a request that training polls at step boundaries.

    A second SIGINT stops at once (exit status 130), without saving. Lightning's own SIGTERM handler is
    replaced while training runs: it would end the run after the current micro-batch, in the middle of
    gradient accumulation, and restored when training ends.
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self.signum: Optional[int] = None
        self._previous: dict[int, Any] = {}

    def install(self) -> None:
        self.signum = None
        if threading.current_thread() is not threading.main_thread():
            return  # signal handlers can only be set from the main thread
        for sig in self.SIGNALS:
            self._previous[sig] = signal.getsignal(sig)
            signal.signal(sig, self._handle)

    def restore(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler if handler is not None else signal.SIG_DFL)
        self._previous = {}

    def _handle(self, signum: int, frame: Any) -> None:
        if self.signum is not None and signum == signal.SIGINT:
            # the second Ctrl-C: stop now, nothing saved. Not KeyboardInterrupt, which Lightning turns into exit 1.
            sys.stderr.write("\nSIGINT again: stopping at once; last.ckpt holds the last step it saved.\n")
            raise TrainingInterrupted(signal.SIGINT)
        if self.signum is None:
            self.signum = signum
            name = signal.Signals(signum).name
            sys.stderr.write(
                f"\n{name} received: finishing this optimizer step, then saving last.ckpt and stopping"
                + (" (Ctrl-C again stops at once without saving)" if signum == signal.SIGINT else "")
                + ".\n"
            )
            sys.stderr.flush()

    def requested(self, trainer) -> Optional[int]:
        """The signal number if any rank was asked to stop (ranks must stop at the same step)."""
        signum = self.signum
        if trainer.world_size > 1:
            anyone = trainer.strategy.reduce_boolean_decision(signum is not None, all=False)
            signum = signum or (signal.SIGTERM if anyone else None)
        return signum


def exit_at_once(signum: int, frame: Any) -> None:
    """A SIGINT and SIGTERM handler while there is nothing to save (validate, test, predict, and fit before its first
    step): one line, status 128 + signal number (130, 143)."""
    if signum == signal.SIGINT:
        sys.stderr.write("\ninterrupted (Ctrl-C)\n")
    else:
        sys.stderr.write(f"\n{signal.Signals(signum).name} received: stopping at once (nothing to save).\n")
    raise TrainingInterrupted(signum)
