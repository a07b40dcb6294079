"""A checkpoint's model settings, weights and tokenizer (the file itself is read by safe_load.read_checkpoint).

A Lightning checkpoint holds everything: the model's shape in `hyper_parameters` (the LightningModule's
constructor arguments) and its weights in `state_dict` under `model.`. nanoGPT's own `ckpt.pt`
(`model_args` + `model`) loads too.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import NamedTuple, Optional, Union

from gpt_lightning.errors import UserError
from gpt_lightning.meta_pkl import nanogpt_meta_file, tokenizer_from_meta_pkl
from gpt_lightning.model import GPTConfig
from gpt_lightning.tokenizer import check_tokenizer_meta
from gpt_lightning.weights.nanogpt import is_nanogpt_checkpoint, nanogpt_tokenizer
from gpt_lightning.weights.safe_load import FROM_FIT, read_checkpoint
from gpt_lightning.weights.state_dict import gpt_state_dict


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
    if saved is not None:
        check_tokenizer_meta(saved, str(path))
    return saved


class GPTCheckpoint(NamedTuple):
    """What a checkpoint file holds for the GPT: its config, its weights (our names, tied), its tokenizer meta (None
    when the file does not say), and the whole dict read (hyperparameters, optimizer state, step)."""

    config: GPTConfig
    state_dict: dict
    tokenizer: Optional[dict]
    raw: dict


def read_gpt_checkpoint(
    path: Union[str, Path], meta: Optional[Union[str, Path]] = None, tokenizer_required: bool = False
) -> GPTCheckpoint:
    """The one reader of a checkpoint written by `fit` or nanoGPT, for generate, export, evaluate and init_from:
    read safely, its config and weights checked to be there, its tokenizer found; no model is built."""
    checkpoint = read_checkpoint(path)
    try:
        config = config_from_checkpoint(checkpoint)
    except UserError as e:  # say which file
        raise UserError(f"{path}: {e}") from e
    weights = checkpoint.get("state_dict") or checkpoint.get("model")
    if not isinstance(weights, dict):
        raise UserError(f"{path} has no model weights (no state_dict); pass {FROM_FIT} or nanoGPT's ckpt.pt.")
    tokenizer = checkpoint_tokenizer(path, checkpoint, config.vocab_size, meta, tokenizer_required)
    return GPTCheckpoint(config, gpt_state_dict(weights, config.tie_embeddings), tokenizer, checkpoint)
