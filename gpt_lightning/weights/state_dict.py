"""The GPT's state dict: the lowest layer under every way weights come in or go out.

- `strip_wrapper_prefixes`: keys without the parts that wrappers add (`_orig_mod.` from torch.compile,
  `module.` from DDP).
- `gpt_state_dict`: the GPT's own entries of any state dict we read (a LightningModule's `model.` prefix
  removed, foreign buffers dropped, a tied lm_head / wte filled in under both names).
- `shape_mismatches` / `check_state_dict`: the one key and shape check (`check_state_dict`: against the
  shapes of `GPT(config)`, with the message for a file that does not fit).
- `pad_token_rows` / `unpad_token_rows`: the token table with and without the padding rows a GPTConfig's
  pad_vocab_multiple adds (a 50257-row GPT-2 in, a 50257-row GPT-2 out).
- `build_model`: a GPT holding exactly these weights, built without a random init.
"""

from __future__ import annotations

import re
from dataclasses import replace

import torch

from gpt_lightning.errors import UserError
from gpt_lightning.model import GPT, GPTConfig

# Buffers other GPT implementations save that ours recomputes (nanoGPT's causal mask without flash, HF's).
FOREIGN_BUFFERS = (".attn.bias", ".attn.masked_bias")


def strip_wrapper_prefixes(state_dict: dict) -> dict:
    """Keys without the `_orig_mod.` (torch.compile) and `module.` (DDP) parts that wrapped models add,
    wherever they sit (`model._orig_mod.transformer.wte.weight` -> `model.transformer.wte.weight`)."""
    return {re.sub(r"(?<![^.])(_orig_mod|module)\.", "", key): value for key, value in state_dict.items()}


def gpt_state_dict(state_dict: dict, tied: bool = True) -> dict:
    """The GPT's own entries of a (wrapped) state dict: wrapper prefixes and the LightningModule's `model.`
    removed, foreign buffers dropped. tied (the config's tie_embeddings): lm_head and wte are one tensor, which a
    file may hold under only one of the two names; untied, each must be there under its own."""
    out = {}
    for key, value in strip_wrapper_prefixes(state_dict).items():
        key = key.removeprefix("model.")
        if key.startswith(("transformer.", "lm_head.")) and not key.endswith(FOREIGN_BUFFERS):
            out[key] = value
    return tie_token_rows(out) if tied else out


def tie_token_rows(sd: dict) -> dict:
    """sd with the tied lm_head / wte tensor under both names (a file may hold it under either)."""
    sd = dict(sd)
    for a, b in (("lm_head.weight", "transformer.wte.weight"), ("transformer.wte.weight", "lm_head.weight")):
        if sd.get(a) is None and sd.get(b) is not None:
            sd[a] = sd[b]
    return sd


def expected_shapes(config: GPTConfig) -> dict[str, torch.Size]:
    """Shapes of every tensor in our GPT's state dict for this config (built on the meta device: free)."""
    with torch.device("meta"):
        model = GPT(config)
    return {k: v.shape for k, v in model.state_dict().items()}


def shape_mismatches(sd: dict, expected: dict[str, torch.Size]) -> tuple[list[str], list[str], list[str]]:
    """(missing keys, unexpected keys, "key (theirs) != (ours)" for wrong shapes) of sd against expected shapes;
    three empty lists when they fit."""
    missing = sorted(k for k in expected if sd.get(k) is None)
    unexpected = sorted(set(sd) - set(expected))
    wrong = [
        f"{k} {tuple(sd[k].shape)} != {tuple(s)}"
        for k, s in expected.items()
        if sd.get(k) is not None and tuple(sd[k].shape) != tuple(s)
    ]
    return missing, unexpected, wrong


def check_state_dict(sd: dict, config: GPTConfig, source: str = "The weights") -> dict:
    """sd with a tied lm_head filled in, after checking that its keys and shapes are exactly those of
    GPT(config)."""
    sd = tie_token_rows(sd) if config.tie_embeddings else dict(sd)
    missing, unexpected, wrong = shape_mismatches(sd, expected_shapes(config))
    if missing or unexpected or wrong:
        raise UserError(
            f"{source} do not fit the model their settings describe (missing: {missing[:3]}, unexpected: "
            f"{unexpected[:3]}, wrong shapes: {wrong[:3]}); the file is corrupt or was not written for this model."
        )
    check_finite(sd, source)
    return sd


VOCAB_ROWS = ("transformer.wte.weight", "lm_head.weight")  # the tensors with a row per token id


def check_finite(sd: dict, source: str = "The weights") -> None:
    """Refuse weights holding NaN or inf: a model of them samples nothing (or blanks) and an export of them is no
    model, without a word otherwise. (Tensors on the meta device hold no values.)"""
    for key, value in sd.items():
        if torch.is_tensor(value) and value.is_floating_point() and value.device.type != "meta":
            if not torch.isfinite(value).all():
                raise UserError(
                    f"{source} hold NaN or infinite values ({key}): the run that wrote them diverged or the file is "
                    "corrupt; use an earlier checkpoint (e.g. the best-*.ckpt of that run)."
                )


def pad_token_rows(sd: dict, config: GPTConfig) -> dict:
    """sd with its token table (and an untied lm_head) grown from config.vocab_size rows (a GPT-2 import: 50257)
    to config.padded_vocab_size (50304). The new rows are zeros; the model masks their logits, so they never
    matter. Any other state dict is returned as it is."""
    sd = tie_token_rows(sd) if config.tie_embeddings else dict(sd)
    rows = config.padded_vocab_size
    for key in VOCAB_ROWS:
        t = sd.get(key)
        if t is not None and rows != config.vocab_size and t.shape[0] == config.vocab_size:
            sd[key] = torch.cat([t, t.new_zeros(rows - t.shape[0], *t.shape[1:])])
    if config.tie_embeddings and sd.get("transformer.wte.weight") is not None:
        sd["lm_head.weight"] = sd["transformer.wte.weight"]  # one tensor again
    return sd


def unpad_token_rows(sd: dict, config: GPTConfig) -> tuple[dict, GPTConfig]:
    """The same model without its padding rows: (state dict, config) with exactly config.vocab_size token rows
    (in wte and lm_head), for formats that would not mask them (Hugging Face's, nanoGPT)."""
    if config.padded_vocab_size == config.vocab_size:
        return sd, config
    sd = tie_token_rows(sd) if config.tie_embeddings else dict(sd)
    for key in VOCAB_ROWS:
        sd[key] = sd[key][: config.vocab_size]
    if config.tie_embeddings:
        sd["lm_head.weight"] = sd["transformer.wte.weight"]
    return sd, replace(config, pad_vocab_multiple=1)


def build_model(config: GPTConfig, state_dict: dict, source: str = "The checkpoint's weights") -> GPT:
    """A GPT of this config holding exactly these weights (UserError if names or shapes disagree)."""
    state_dict = check_state_dict(state_dict, config, source)
    # On the meta device: no time or memory spent on a random init that is overwritten next. Only what the
    # state dict holds is assigned, so a module must not keep anything else (RoPE computes its tables in
    # forward; the causal mask of PyTorch without scaled_dot_product_attention is never built on >= 2.0):
    # checked below, so a new buffer fails here, not later on the meta device.
    with torch.device("meta"):
        model = GPT(config)
    model.load_state_dict(state_dict, assign=True)
    if config.tie_embeddings:
        model.transformer.wte.weight = model.lm_head.weight  # assign=True replaced the tied tensor: tie again
    left = [name for name, t in [*model.named_parameters(), *model.named_buffers()] if t.is_meta]
    if left:
        raise RuntimeError(
            f"build_model: {left[:3]} are still on the meta device: a module keeps a tensor that is not in its "
            "state dict; compute it in forward (as Rotary does) or make the buffer persistent."
        )
    return model
