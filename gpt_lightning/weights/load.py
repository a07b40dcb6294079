"""Any path in, GPT out: a checkpoint written by `fit`, nanoGPT's `ckpt.pt`, or pretrained GPT-2 weights (a hub
name, a Hugging Face folder, a .safetensors file). `generate`, `export` and anything else that needs the
trained network, not the Trainer, start here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Union

import torch

from gpt_lightning.errors import UserError
from gpt_lightning.model import GPT, GPTConfig
from gpt_lightning.tokenizer import Tokenizer, tokenizer_from_meta
from gpt_lightning.weights.checkpoint import (
    checkpoint_tokenizer,
    config_from_checkpoint,
    read_checkpoint,
    read_gpt_checkpoint,
)
from gpt_lightning.weights.hf import load_pretrained
from gpt_lightning.weights.nanogpt import NanoGPTRun, is_nanogpt_checkpoint, nanogpt_run
from gpt_lightning.weights.state_dict import build_model, gpt_state_dict


def is_lightning_checkpoint(path: Union[str, Path]) -> bool:
    """A .ckpt/.pt file (existing or not) or a folder with a last.ckpt, as opposed to pretrained GPT-2 weights
    (a hub name, a Hugging Face folder, a .safetensors file), which weights/hf.py reads."""
    path = Path(path)
    if path.suffix in (".ckpt", ".pt", ".pth"):
        return True
    return path.is_dir() and ((path / "last.ckpt").is_file() or (path / "checkpoints" / "last.ckpt").is_file())


def load_checkpoint_model(
    path: Union[str, Path], device: Union[str, torch.device] = "cpu", meta: Optional[Union[str, Path]] = None
) -> tuple[GPT, Optional[Tokenizer]]:
    """The GPT of a checkpoint written by `fit` or nanoGPT (or of pretrained GPT-2 weights), on `device` and in eval
    mode, and its tokenizer (None if the file does not say which). `meta`: nanoGPT's meta.pkl (or its folder) for a
    nanoGPT checkpoint, which is otherwise looked for as nanoGPT's sample.py does (weights/nanogpt.py).
    Raises UserError for a missing, unreadable or mismatched file."""
    if is_lightning_checkpoint(path):
        config, state_dict, meta = read_gpt_checkpoint(path, meta, tokenizer_required=True)
    else:
        if meta is not None:
            raise UserError(f"--meta applies to nanoGPT's ckpt.pt only, not to {path}; drop --meta.")
        config, state_dict, meta = load_pretrained(str(path))  # GPT-2 weights: hub name, HF folder, .safetensors
    model = build_model(config, state_dict, f"The weights in {path}")
    tokenizer = tokenizer_from_meta(meta) if meta else None
    return model.to(device).eval(), tokenizer


def load_init_weights(
    init_from: str, continue_run: bool = False
) -> tuple[GPTConfig, dict, Optional[dict], Optional[NanoGPTRun]]:
    """(config, state dict, tokenizer meta or None, nanoGPT run or None) of `--model.init_from`: a checkpoint file
    (nanoGPT's ckpt.pt, or a .ckpt written by `fit`) or pretrained GPT-2 weights. With continue_run, the step
    and AdamW state of a nanoGPT checkpoint come too (`--model.init_optimizer_state`)."""
    if not is_lightning_checkpoint(init_from):
        if continue_run:
            raise UserError(
                f"--model.init_optimizer_state continues a nanoGPT run, but {init_from} is not a nanoGPT ckpt.pt; "
                "leave it unset."
            )
        return (*load_pretrained(init_from), None)
    checkpoint = read_checkpoint(init_from)
    config = config_from_checkpoint(checkpoint)
    raw = checkpoint.get("state_dict") or checkpoint.get("model")
    if not isinstance(raw, dict):
        raise UserError(f"{init_from} has no model weights; pass nanoGPT's ckpt.pt or a .ckpt written by `fit`.")
    tokenizer = checkpoint_tokenizer(init_from, checkpoint, config.vocab_size, required=False)
    run = None
    if continue_run:
        if not is_nanogpt_checkpoint(checkpoint):
            raise UserError(
                f"--model.init_optimizer_state continues a nanoGPT run, but {init_from} was written by `fit`: "
                "continue it with --ckpt_path instead."
            )
        run = nanogpt_run(checkpoint, init_from)
    return config, gpt_state_dict(raw), tokenizer, run
