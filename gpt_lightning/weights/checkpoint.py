"""Reading checkpoint files: the one torch.load wrapper, and a checkpoint's model settings and weights.

A Lightning checkpoint holds everything: the model's shape in `hyper_parameters` (the LightningModule's
constructor arguments) and its weights in `state_dict` under `model.`. nanoGPT's own `ckpt.pt`
(`model_args` + `model`) loads too.
"""

from __future__ import annotations

import dataclasses
import pickle
from pathlib import Path
from typing import Optional, Union

import torch

from gpt_lightning.errors import UserError
from gpt_lightning.model import GPTConfig
from gpt_lightning.weights.nanogpt import (
    is_nanogpt_checkpoint,
    nanogpt_meta_file,
    nanogpt_tokenizer,
    tokenizer_from_meta_pkl,
)
from gpt_lightning.weights.state_dict import gpt_state_dict

FROM_FIT = "a .ckpt written by `fit`"


def read_checkpoint(path: Union[str, Path], *, mmap: bool = False, expected: str = FROM_FIT) -> dict:
    """torch.load a file onto the CPU (tensors and plain containers only), with one set of one-sentence
    UserErrors for every way that can fail. Every torch.load of a user's file goes through here.

    A folder is taken to mean the `last.ckpt` in it (or in its `checkpoints/`). mmap: map the tensors instead
    of reading them (a checkpoint only looked into costs no memory). expected: what to pass instead, for the
    messages."""
    path = Path(path)
    if path.is_dir():
        candidates = [path / "last.ckpt", path / "checkpoints" / "last.ckpt"]
        found = next((c for c in candidates if c.is_file()), None)
        if found is None:
            raise UserError(f"{path} is a folder without a last.ckpt; pass the path of {expected}.")
        path = found
    if not path.is_file():
        raise UserError(f"{path} does not exist; pass {expected}, e.g. out/NAME/checkpoints/last.ckpt.")
    instead = f"pass {expected}"
    others = sorted(path.parent.glob("best-*.ckpt")) if path.name == "last.ckpt" else []
    if others:  # a run killed while Lightning wrote last.ckpt itself; our own saves are atomic
        instead = f"resume from {others[-1]} beside it instead, or pass another checkpoint"
    try:
        # weights_only: tensors and plain containers only, so a checkpoint cannot run code when it is read
        checkpoint = torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except pickle.UnpicklingError as e:
        if "weights only" not in str(e).lower():
            raise UserError(f"{path} is not a readable checkpoint (corrupt, or not a torch file); {instead}.") from e
        raise UserError(
            f"{path} holds Python objects beyond tensors, which could run code when read; refused for safety: pass "
            f"{expected}."
        ) from e
    except Exception as e:  # the unpickler fails in many ways on a truncated or foreign file
        raise UserError(f"{path} is not a readable checkpoint (it may be truncated); {instead}.") from e
    if not isinstance(checkpoint, dict):
        raise UserError(f"{path} holds a {type(checkpoint).__name__}, not a dict of tensors; pass {expected}.")
    return checkpoint


def config_from_checkpoint(checkpoint: dict) -> GPTConfig:
    """GPTConfig from a Lightning checkpoint's hyper_parameters (or nanoGPT's model_args)."""
    hparams = checkpoint.get("hyper_parameters") or checkpoint.get("model_args")
    if not isinstance(hparams, dict):
        raise UserError(
            "The checkpoint has no hyper_parameters to rebuild the model from; pass a .ckpt written by `fit`."
        )
    fields = {f.name for f in dataclasses.fields(GPTConfig)}
    try:
        return GPTConfig(**{k: v for k, v in hparams.items() if k in fields and v is not None})
    except (TypeError, ValueError) as e:
        raise UserError(f"The checkpoint's model settings are invalid ({e}); was it written by gpt_lightning?") from e


def checkpoint_tokenizer(
    path: Union[str, Path],
    checkpoint: dict,
    vocab_size: int,
    meta: Optional[Union[str, Path]] = None,
    required: bool = True,
) -> Optional[dict]:
    """The tokenizer meta of a checkpoint: the one saved with the model by `fit`; for nanoGPT's ckpt.pt (none
    saved), the meta.pkl given or found as nanoGPT's sample.py finds it, else GPT-2's BPE (weights/nanogpt.py).
    None when unknown and not `required`."""
    if is_nanogpt_checkpoint(checkpoint):
        return nanogpt_tokenizer(path, checkpoint, vocab_size, meta, required)
    saved = (checkpoint.get("hyper_parameters") or {}).get("tokenizer") or None
    if meta is not None and saved is not None:
        raise UserError(f"{path} records its own tokenizer, so --meta does not apply to it; drop --meta.")
    if meta is not None:
        return tokenizer_from_meta_pkl(nanogpt_meta_file(meta))
    return saved


def read_gpt_checkpoint(
    path: Union[str, Path], meta: Optional[Union[str, Path]] = None, tokenizer_required: bool = False
) -> tuple[GPTConfig, dict, Optional[dict]]:
    """(config, the GPT's state dict, tokenizer meta or None) of a checkpoint, without building the model."""
    checkpoint = read_checkpoint(path)
    config = config_from_checkpoint(checkpoint)
    raw = checkpoint.get("state_dict") or checkpoint.get("model")
    if not isinstance(raw, dict):
        raise UserError(f"{path} has no model weights (no state_dict); pass {FROM_FIT}.")
    tokenizer = checkpoint_tokenizer(path, checkpoint, config.vocab_size, meta, tokenizer_required)
    return config, gpt_state_dict(raw, config.tie_embeddings), tokenizer
