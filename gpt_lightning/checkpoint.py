"""Checkpoint in, GPT out: rebuild a plain `GPT` (and its tokenizer) from a file written by `fit`.

`generate`, the GPT-2 export and anything else that needs the trained network, not the Trainer, start here.
A Lightning checkpoint holds everything: the model's shape in `hyper_parameters` (the LightningModule's
constructor arguments) and its weights in `state_dict` under `model.`. nanoGPT's own `ckpt.pt`
(`model_args` + `model`) loads too.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Optional, Union

import torch

from gpt_lightning.errors import UserError
from gpt_lightning.model import GPT, GPTConfig
from gpt_lightning.tokenizer import Tokenizer, tokenizer_from_meta

# Buffers other GPT implementations save that ours recomputes (nanoGPT's causal mask without flash, HF's).
_IGNORED_SUFFIXES = (".attn.bias", ".attn.masked_bias")


def read_checkpoint(path: Union[str, Path]) -> dict:
    """torch.load a checkpoint onto the CPU, with a one-sentence UserError for every way that can fail.

    A folder is taken to mean the `last.ckpt` in it (or in its `checkpoints/`)."""
    path = Path(path)
    if path.is_dir():
        candidates = [path / "last.ckpt", path / "checkpoints" / "last.ckpt"]
        found = next((c for c in candidates if c.is_file()), None)
        if found is None:
            raise UserError(f"{path} is a folder without a last.ckpt; pass the path of a .ckpt file written by `fit`.")
        path = found
    if not path.is_file():
        raise UserError(
            f"Checkpoint {path} does not exist; pass a .ckpt written by `fit`, e.g. out/NAME/checkpoints/last.ckpt."
        )
    try:
        # weights_only: tensors and plain containers only, so a checkpoint cannot run code when it is read
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # the unpickler fails in many ways on a truncated or foreign file
        first_line = str(e).strip().splitlines()[0] if str(e).strip() else ""
        raise UserError(
            f"Could not read checkpoint {path} ({type(e).__name__}: {first_line[:200]}); it is truncated, "
            "not a torch checkpoint, or holds Python objects beyond tensors: pass a .ckpt written by `fit`."
        ) from e
    if not isinstance(checkpoint, dict):
        raise UserError(f"{path} holds a {type(checkpoint).__name__}, not a checkpoint dict; pass a .ckpt written by `fit`.")
    return checkpoint


def strip_wrapper_prefixes(state_dict: dict) -> dict:
    """Keys without the `_orig_mod.` (torch.compile) and `module.` (DDP) parts that wrapped models add,
    wherever they sit (`model._orig_mod.transformer.wte.weight` -> `model.transformer.wte.weight`)."""
    return {re.sub(r"(?<![^.])(_orig_mod|module)\.", "", key): value for key, value in state_dict.items()}


def gpt_state_dict(state_dict: dict) -> dict:
    """The GPT's own entries of a (wrapped) state dict: wrapper prefixes and the LightningModule's `model.`
    removed, foreign buffers dropped."""
    out = {}
    for key, value in strip_wrapper_prefixes(state_dict).items():
        key = key.removeprefix("model.")
        if key.startswith(("transformer.", "lm_head.")) and not key.endswith(_IGNORED_SUFFIXES):
            out[key] = value
    # lm_head and wte share one tensor; a file may hold it under only one of the two names
    for a, b in (("lm_head.weight", "transformer.wte.weight"), ("transformer.wte.weight", "lm_head.weight")):
        if a not in out and b in out:
            out[a] = out[b]
    return out


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


def tokenizer_meta_from_checkpoint(checkpoint: dict, vocab_size: int) -> Optional[dict]:
    """The tokenizer meta saved with the model; for nanoGPT's ckpt.pt (none saved), GPT-2's BPE when the
    vocabulary is GPT-2-sized. None when unknown."""
    meta = (checkpoint.get("hyper_parameters") or {}).get("tokenizer")
    if meta:
        return meta
    if "model_args" in checkpoint and vocab_size >= 50257:
        return {"kind": "gpt2", "encoding": "gpt2"}
    return None


def read_gpt_checkpoint(path: Union[str, Path]) -> tuple[GPTConfig, dict, Optional[dict]]:
    """(config, the GPT's state dict, tokenizer meta or None) of a checkpoint, without building the model."""
    checkpoint = read_checkpoint(path)
    config = config_from_checkpoint(checkpoint)
    raw = checkpoint.get("state_dict") or checkpoint.get("model")
    if not isinstance(raw, dict):
        raise UserError(f"Checkpoint {path} has no model weights (no state_dict); pass a .ckpt written by `fit`.")
    return config, gpt_state_dict(raw), tokenizer_meta_from_checkpoint(checkpoint, config.vocab_size)


def build_model(config: GPTConfig, state_dict: dict, source: str = "the checkpoint") -> GPT:
    """A GPT of this config holding exactly these weights (UserError if names or shapes disagree)."""
    # On the meta device: no time or memory spent on a random init that is overwritten next. (The model's
    # only buffer, the causal mask of PyTorch without scaled_dot_product_attention, is never built on >= 2.0.)
    with torch.device("meta"):
        model = GPT(config)
    expected = model.state_dict().keys()
    missing = sorted(set(expected) - state_dict.keys())
    unexpected = sorted(state_dict.keys() - set(expected))
    if missing or unexpected:
        raise UserError(
            f"{source} does not match its own model settings ({len(missing)} missing weights, e.g. "
            f"{missing[:3]}; {len(unexpected)} unexpected, e.g. {unexpected[:3]}); was it written by gpt_lightning?"
        )
    try:
        model.load_state_dict(state_dict, assign=True)
    except RuntimeError as e:  # shape mismatch
        raise UserError(f"{source} does not match its own model settings: {str(e).strip().splitlines()[-1].strip()}") from e
    model.transformer.wte.weight = model.lm_head.weight  # assign=True replaced the tied tensor: tie again
    return model


def is_lightning_checkpoint(path: Union[str, Path]) -> bool:
    """A .ckpt/.pt file (existing or not) or a folder with a last.ckpt, as opposed to pretrained GPT-2 weights
    (a hub name, a Hugging Face folder, a .safetensors file), which gpt_lightning.hf reads."""
    path = Path(path)
    if path.suffix in (".ckpt", ".pt", ".pth"):
        return True
    return path.is_dir() and ((path / "last.ckpt").is_file() or (path / "checkpoints" / "last.ckpt").is_file())


def load_checkpoint_model(
    path: Union[str, Path], device: Union[str, torch.device] = "cpu"
) -> tuple[GPT, Optional[Tokenizer]]:
    """The GPT of a checkpoint written by `fit` (or of pretrained GPT-2 weights, where gpt_lightning.hf is
    installed), on `device` and in eval mode, and its tokenizer (None if the file does not say which).
    Raises UserError for a missing, unreadable or mismatched file."""
    config = state_dict = meta = None
    if not is_lightning_checkpoint(path):
        try:
            from gpt_lightning.hf import load_pretrained  # GPT-2 weights: hub name, HF folder, .safetensors
        except ImportError:
            pass
        else:
            config, state_dict, meta = load_pretrained(str(path))
    if config is None:
        config, state_dict, meta = read_gpt_checkpoint(path)
    model = build_model(config, state_dict, f"Checkpoint {path}")
    tokenizer = tokenizer_from_meta(meta) if meta else None
    return model.to(device).eval(), tokenizer
