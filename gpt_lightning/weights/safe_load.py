"""The one torch.load of a user's file: tensors and plain containers only, with one-sentence errors.

At the bottom of weights/: it imports nothing of this package but errors, so every reader (checkpoints, nanoGPT
files, GPT-2 weights, --ckpt_path) can use it.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Union

import torch

from gpt_lightning.errors import UserError

FROM_FIT = "a .ckpt written by `fit`"


def written_by_torch_save(path: Path) -> bool:
    """Whether a file starts as torch.save writes one: a zip archive (torch >= 1.6) or a pickle of protocol 2 or
    more (the legacy format)."""
    with open(path, "rb") as f:
        head = f.read(4)
    return head == b"PK\x03\x04" or head[:1] == b"\x80"


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
        raise UserError(f"{path} does not exist; pass {expected}, e.g. out/NAME/version_0/checkpoints/last.ckpt.")
    instead = f"pass {expected}"
    others = sorted(path.parent.glob("best-*.ckpt")) if path.name == "last.ckpt" else []
    if others:  # a run killed while Lightning wrote last.ckpt itself; our own saves are atomic
        instead = f"resume from {others[-1]} beside it instead, or pass another checkpoint"
    if not written_by_torch_save(path):  # text or random bytes, which the unpickler would call Python objects
        raise UserError(f"{path} is not a checkpoint (not a file torch.save wrote); {instead}.")
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
