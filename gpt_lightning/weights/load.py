"""Any path in, GPT out: a checkpoint written by `fit`, nanoGPT's `ckpt.pt`, or pretrained GPT-2 weights (a hub
name, a Hugging Face folder, a .safetensors file). `generate`, `export` and anything else that needs the
trained network, not the Trainer, start here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Union

import torch

from gpt_lightning.model import GPT
from gpt_lightning.tokenizer import Tokenizer, tokenizer_from_meta
from gpt_lightning.weights.checkpoint import read_gpt_checkpoint
from gpt_lightning.weights.hf import load_pretrained
from gpt_lightning.weights.state_dict import build_model


def is_lightning_checkpoint(path: Union[str, Path]) -> bool:
    """A .ckpt/.pt file (existing or not) or a folder with a last.ckpt, as opposed to pretrained GPT-2 weights
    (a hub name, a Hugging Face folder, a .safetensors file), which weights/hf.py reads."""
    path = Path(path)
    if path.suffix in (".ckpt", ".pt", ".pth"):
        return True
    return path.is_dir() and ((path / "last.ckpt").is_file() or (path / "checkpoints" / "last.ckpt").is_file())


def load_checkpoint_model(
    path: Union[str, Path], device: Union[str, torch.device] = "cpu"
) -> tuple[GPT, Optional[Tokenizer]]:
    """The GPT of a checkpoint written by `fit` (or of pretrained GPT-2 weights), on `device` and in eval mode, and its tokenizer (None if the file does not say which).
    Raises UserError for a missing, unreadable or mismatched file."""
    if is_lightning_checkpoint(path):
        config, state_dict, meta = read_gpt_checkpoint(path)
    else:
        config, state_dict, meta = load_pretrained(str(path))  # GPT-2 weights: hub name, HF folder, .safetensors
    model = build_model(config, state_dict, f"The weights in {path}")
    tokenizer = tokenizer_from_meta(meta) if meta else None
    return model.to(device).eval(), tokenizer
