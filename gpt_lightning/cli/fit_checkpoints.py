"""`--ckpt_path` for fit, validate and test: which file it means, what it fills in, and whether it fits.

- `resolve_ckpt_path`: `last`, a run's folder or a file, checked to exist; URLs refused (only a local file is
  read, tensors only).
- `checkpoint_hparams_as_defaults`: the checkpoint's hyperparameters fill in what the config and command line
  leave unset; values given now win.
- `check_checkpoint_fits` (and `_before_building`, on the meta device): a checkpoint whose architecture (any
  GPTConfig field), weights or tokenizer does not fit the model is refused with one sentence instead of a
  state_dict traceback.
- `refuse_to_overwrite_run`: a new run does not write into a checkpoint folder that holds an earlier run's work.
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path
from typing import Any, Optional

import torch

from gpt_lightning.errors import UserError
from gpt_lightning.model import GPT, GPTConfig
from gpt_lightning.tokenizer import tokenizer_difference
from gpt_lightning.weights.safe_load import read_checkpoint
from gpt_lightning.weights.state_dict import gpt_state_dict, shape_mismatches

# Model hyperparameters that the CLI links from the data; a checkpoint's values must not be used as defaults
# for them (block_size instead becomes the default of --data.block_size).
LINKED_FROM_DATA = ("vocab_size", "tokenizer", "block_size")
# GPTConfig fields a continued run may set anew: they change how the weights are trained, not what they compute.
MAY_CHANGE = ("dropout",)


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


def architecture_differences(saved: dict, now: dict) -> list[str]:
    """`field=X there, Y here` for each GPTConfig field (but MAY_CHANGE) that differs between a checkpoint's
    hyperparameters and the model's. A field the checkpoint predates has its default there (GPT-2's behaviour,
    which the checkpoint was trained with)."""
    out = []
    for f in dataclasses.fields(GPTConfig):
        theirs, ours = saved.get(f.name, f.default), now.get(f.name, f.default)
        if f.name not in MAY_CHANGE and ours is not None and theirs != ours:
            out.append(f"{f.name}={theirs} there, {ours} here")
    return out


def check_checkpoint_fits(path: str, ckpt: dict, model: torch.nn.Module, hparams: dict) -> None:
    """Refuse, in one sentence, a checkpoint trained with another architecture (any GPTConfig field but dropout),
    whose weights do not have the shapes of the model built now, or whose tokenizer is not the data's (same
    shapes, but ids that decode to other text)."""
    saved = ckpt.get("hyper_parameters") or {}
    diffs = architecture_differences(saved, hparams)
    if diffs:
        hint = (
            "train on data with the same vocabulary (data_dir)"
            if any(d.startswith("vocab_size=") for d in diffs)
            else "use the config it was trained with, or drop the options that change the architecture"
        )
        raise UserError(f"Checkpoint {path} does not fit this model ({'; '.join(diffs)}): {hint}.")
    theirs = gpt_state_dict(dict(ckpt["state_dict"]))  # as GPTLightningModule.on_load_checkpoint reads it
    ours = {k: v.shape for k, v in gpt_state_dict(model.state_dict()).items()}
    missing, unexpected, wrong = shape_mismatches(theirs, ours)
    if missing or unexpected or wrong:  # no hyperparameter explains it: not what its own hyperparameters describe
        first = ([f"{k} missing there" for k in missing] + [f"{k} is not in this model" for k in unexpected] + wrong)[0]
        raise UserError(
            f"Checkpoint {path} does not fit this model ({first}): its weights do not have the shapes its own "
            "hyperparameters describe, so it is corrupt or was edited."
        )
    data = hparams.get("tokenizer")
    difference = tokenizer_difference(saved["tokenizer"], data) if saved.get("tokenizer") and data else None
    if difference:
        raise UserError(
            f"Checkpoint {path} was trained on other tokens than this data's ({difference}), so its ids would "
            "mean other text; use the data folder it was trained on (data_dir), or prepare the data from the "
            "same text with the same tokenizer."
        )


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
