"""Resuming and interruptions: what keeps a long run's work safe.

- `AtomicCheckpointIO`: a checkpoint is written to a temporary file in its own folder, fsynced and renamed into
  place, so a kill at any moment leaves the previous `last.ckpt` intact (Lightning's own writer stages the file in
  the system temp dir and moves it, which is a copy, not a rename, when /tmp is another file system).
- `StopRequest`: the first SIGINT (Ctrl-C) or SIGTERM (preemption) only asks the run to stop; `LastCheckpoint`
  finishes the current optimizer step, saves `last.ckpt` and exits with status 128 + signal number. Stopping at a
  step boundary is what makes the saved state exact: a micro-batch's gradients are never saved, so a checkpoint
  taken in the middle of gradient accumulation could not be resumed exactly.
- `checkpoint_hparams_as_defaults` and `check_checkpoint_fits`: with `--ckpt_path`, the checkpoint's
  hyperparameters fill in what the config and command line leave unset, values given now win, and a checkpoint
  that does not fit the model is refused with one sentence instead of a state_dict traceback.
- `refuse_to_overwrite_run`: a new run does not write into a checkpoint folder that holds an earlier run's work.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import sys
import threading
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch
from fsspec.implementations.local import LocalFileSystem
from lightning.fabric.utilities.cloud_io import get_filesystem
from lightning.pytorch.plugins.io import TorchCheckpointIO

from gpt_lightning.errors import UserError, caused_by_full_disk, disk_full_message, free_space
from gpt_lightning.files import atomic_write
from gpt_lightning.model import GPT, GPTConfig
from gpt_lightning.tokenizer import tokenizer_difference
from gpt_lightning.weights.checkpoint import read_checkpoint
from gpt_lightning.weights.state_dict import gpt_state_dict, shape_mismatches

# Model hyperparameters that the CLI links from the data; a checkpoint's values must not be used as defaults
# for them (block_size instead becomes the default of --data.block_size).
LINKED_FROM_DATA = ("vocab_size", "tokenizer", "block_size")
# Hyperparameters that decide the shapes of the weights, named in the mismatch message.
ARCHITECTURE = ("n_layer", "n_head", "n_embd", "vocab_size", "pad_vocab_multiple", "block_size", "bias")


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


# ------------------------------------------------------------ --ckpt_path


def resolve_ckpt_path(ckpt_path: Optional[str], checkpoint_dir: Optional[str]) -> Optional[str]:
    """`last` -> DIR/last.ckpt (None, with a note, when there is none yet: a first run under a requeue script);
    a path must exist. A URL and Lightning's other special values (`best`, `hpc`, `registry`) are refused: Lightning
    would read them with full pickle, which can run code, and only a local file passes through read_checkpoint."""
    if ckpt_path is None:
        return None
    if ckpt_path in ("best", "hpc", "registry") or "://" in ckpt_path:
        raise UserError(
            f"--ckpt_path {ckpt_path} is not a local checkpoint file; only a .ckpt file, a run's folder or `last` is "
            "read (safely, tensors only): download a remote checkpoint first and pass its path."
        )
    if ckpt_path == "last":
        if checkpoint_dir is None:
            return ckpt_path  # Lightning searches its default folders
        last = Path(checkpoint_dir) / "last.ckpt"
        if last.is_file():
            return str(last)
        print(f"note: --ckpt_path last: no {last} yet, so this run starts from scratch.", file=sys.stderr)
        return None
    if Path(ckpt_path).is_dir():  # a run's folder means its last.ckpt, as for `generate` and `export`
        last = Path(ckpt_path) / "last.ckpt"
        if not last.is_file():
            raise UserError(
                f"--ckpt_path {ckpt_path} is a folder without a last.ckpt; give the path of a .ckpt file in it, or "
                "the folder of a run that saved one."
            )
        return str(last)
    if not Path(ckpt_path).is_file():
        raise UserError(
            f"--ckpt_path {ckpt_path} does not exist; give the path of a .ckpt file, or `last` to resume from "
            "last.ckpt in --checkpoint.dirpath."
        )
    return ckpt_path


def load_checkpoint_meta(path: str) -> dict:
    """hyper_parameters, state_dict and global_step of a checkpoint, memory-mapped (nothing is copied)."""
    ckpt = read_checkpoint(path, mmap=True)
    if "state_dict" not in ckpt:
        raise UserError(f"{path} is not a Lightning checkpoint of this project (it has no state_dict).")
    return ckpt


def checkpoint_hparams_as_defaults(hparams: dict, known: set[str]) -> dict[str, Any]:
    """Parser defaults from a checkpoint's hyperparameters: `model.*` ones, plus `data.block_size`."""
    defaults = {f"model.{k}": v for k, v in hparams.items() if k in known and k not in LINKED_FROM_DATA}
    if "vocab_size" in hparams and "pad_vocab_multiple" not in hparams and "pad_vocab_multiple" in known:
        defaults["model.pad_vocab_multiple"] = 1  # written before padding existed: its rows are its vocab_size
    if "block_size" in hparams:
        defaults["data.block_size"] = hparams["block_size"]
    return defaults


def check_checkpoint_fits(path: str, ckpt: dict, model: torch.nn.Module, hparams: dict) -> None:
    """Refuse, in one sentence, a checkpoint whose weights do not have the shapes of the model built now, or whose
    tokenizer is not the data's (same shapes, but ids that decode to other text)."""
    theirs = gpt_state_dict(dict(ckpt["state_dict"]))  # as GPTLightningModule.on_load_checkpoint reads it
    ours = {k: v.shape for k, v in gpt_state_dict(model.state_dict()).items()}
    missing, unexpected, wrong = shape_mismatches(theirs, ours)
    if not (missing or unexpected or wrong):
        saved, data = (ckpt.get("hyper_parameters") or {}).get("tokenizer"), hparams.get("tokenizer")
        difference = tokenizer_difference(saved, data) if saved and data else None
        if difference:
            raise UserError(
                f"Checkpoint {path} was trained on other tokens than this data's ({difference}), so its ids would "
                "mean other text; use the data folder it was trained on (data_dir), or prepare the data from the "
                "same text with the same tokenizer."
            )
        return
    old = ckpt.get("hyper_parameters", {})
    diffs = [f"{k}={old[k]} there, {hparams[k]} here" for k in ARCHITECTURE if k in old and old[k] != hparams.get(k)]
    hint = (
        "train on data with the same vocabulary (data_dir)"
        if any(d.startswith("vocab_size=") for d in diffs)
        else "use the config it was trained with, or drop the options that change the architecture"
    )
    if not diffs:  # no hyperparameter explains it: its weights are not what its own hyperparameters describe
        diffs = [f"{k} missing there" for k in missing] + [f"{k} is not in this model" for k in unexpected] + wrong
        diffs = diffs[:1]
        hint = "its weights do not have the shapes its own hyperparameters describe, so it is corrupt or was edited"
    raise UserError(f"Checkpoint {path} does not fit this model ({'; '.join(diffs)}): {hint}.")


def check_checkpoint_fits_before_building(path: str, ckpt: dict, hparams: dict) -> None:
    """check_checkpoint_fits against a model built on the meta device (no memory) from the hyperparameters the
    model is about to be built with: a checkpoint whose hyperparameters say n_embd=65536 while its weights do not
    would otherwise allocate tens of GB before the check. Settings GPTConfig refuses are left to the module."""
    fields = {f.name for f in dataclasses.fields(GPTConfig)}
    try:
        config = GPTConfig(**{k: v for k, v in hparams.items() if k in fields and v is not None})
    except (TypeError, ValueError):
        return
    with torch.device("meta"):
        model = GPT(config)
    check_checkpoint_fits(path, ckpt, model, hparams)


def check_same_optimizer(path: str, ckpt: dict, optimizer: str) -> None:
    """Resuming restores the optimizer state the checkpoint holds, whose parameter groups are those of the optimizer
    that wrote it: AdamW's state cannot continue as Muon's, nor the other way round (torch would refuse it with a
    traceback once the Trainer had started)."""
    saved = (ckpt.get("hyper_parameters") or {}).get("optimizer", "adamw")  # written before Muon existed: AdamW
    if ckpt.get("optimizer_states") and saved != optimizer:
        raise UserError(
            f"Checkpoint {path} was trained with --model.optimizer {saved}, whose state cannot continue as "
            f"{optimizer}'s; resume with --model.optimizer {saved}, or start {optimizer} from its weights with "
            f"--model.init_from {path} and a new --checkpoint.dirpath."
        )


# ------------------------------------------------------------ a fresh run must not overwrite an earlier one


def refuse_to_overwrite_run(checkpoint_dir: Optional[str]) -> None:
    """A new run (no --ckpt_path) into a folder that already holds checkpoints would replace an earlier run's
    last.ckpt and mix its best checkpoints with the new ones: refuse, and say how to resume or start over."""
    if checkpoint_dir is None or not Path(checkpoint_dir).is_dir():
        return
    found = sorted(p.name for p in Path(checkpoint_dir).glob("*.ckpt"))
    if found:
        raise UserError(
            f"{checkpoint_dir} already holds checkpoints of an earlier run ({', '.join(found[:3])}"
            f"{', ...' if len(found) > 3 else ''}); resume it with --ckpt_path last, or start a new run with "
            "another --checkpoint.dirpath (or delete that folder)."
        )


# ------------------------------------------------------------ what a resumed run must reproduce or replace


def reseed_dropout(trainer, batch_idx: int) -> None:
    """Seed the global torch RNG for this micro-batch from (seed, rank, micro-batch index), as the data stream is.

    Dropout masks come from the global torch RNG, which checkpoints do not hold and which validation and
    dataloaders also draw from; seeded per micro-batch, masks, and so a resumed run, are exact."""
    accumulate = trainer.accumulate_grad_batches
    k = trainer.global_step * accumulate + batch_idx % accumulate
    seed = int(os.environ.get("PL_GLOBAL_SEED", 0))
    torch.manual_seed(int(np.random.SeedSequence([seed, trainer.global_rank, k]).generate_state(1)[0]))


def use_optimizer_hparams_given_now(trainer, learning_rate: float, weight_decays, betas) -> None:
    """On resume Lightning restores the optimizer and scheduler states of the run that wrote the checkpoint,
    learning rate, betas and weight decay included; the values given now (a finetune's new learning rate) win.
    On a fresh run this changes nothing.

    The LR scheduler is rebuilt at the restored step (the public `last_epoch` argument), so that its base LR,
    the param groups' LR and `get_last_lr()` all follow the new peak learning rate."""
    optimizer = trainer.optimizers[0]
    for group, weight_decay in zip(optimizer.param_groups, weight_decays):
        group.update(betas=betas, weight_decay=weight_decay, initial_lr=learning_rate, lr=learning_rate)
    for config in trainer.lr_scheduler_configs:
        old = config.scheduler
        config.scheduler = type(old)(optimizer, old.lr_lambdas, last_epoch=old.last_epoch - 1)  # steps to last_epoch
