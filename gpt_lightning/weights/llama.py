"""The modern block in and out of Hugging Face: a GPT with rope + rmsnorm + swiglu exports as a LlamaForCausalLM
(with qk_norm: a Qwen3ForCausalLM), and such a folder (ours, or any Llama / Qwen3 of the same shape) imports back.

What makes the two the same function, checked by tests/unit/test_modern_export.py to 1e-5 against transformers:
- RoPE: ours pairs channel i of a head with i + head_size / 2 (Hugging Face's rotate_half), with the same
  frequencies (rope_base = rope_theta), so q and k need no permutation.
- RMSNorm: the same formula (float32, eps 1e-5 = rms_norm_eps), a weight and no bias; QK-norm as Qwen3's q_norm /
  k_norm, over each head, before RoPE.
- Attention: one key/value head per query head, scaled by 1 / sqrt(head_size), causal.
- SwiGLU: our c_fc holds gate_proj's rows then up_proj's; c_proj is down_proj.
- c_attn holds q_proj's, k_proj's and v_proj's rows in that order; c_proj is o_proj. Biases (bias=True) map to
  attention_bias and mlp_bias (Llama only: Qwen3's MLP has none).
Nothing here imports Lightning or transformers (the files are plain config.json and safetensors).
"""

from __future__ import annotations

import re

import torch

from gpt_lightning.errors import UserError
from gpt_lightning.model import GPTConfig
from gpt_lightning.weights.formats import HF_LLAMA, HF_QWEN3, ExportFormat
from gpt_lightning.weights.state_dict import check_state_dict

RMS_NORM_EPS = 1e-5  # model.RMSNorm's
ARCHITECTURES = {"llama": "LlamaForCausalLM", "qwen3": "Qwen3ForCausalLM"}
FORMAT_TYPES = {HF_LLAMA.name: "llama", HF_QWEN3.name: "qwen3"}

# our per-layer names -> theirs, for the tensors that map one to one (`{}` is the layer index)
ONE_TO_ONE = {
    "ln_1.weight": "input_layernorm.weight",
    "ln_2.weight": "post_attention_layernorm.weight",
    "attn.c_proj.weight": "self_attn.o_proj.weight",
    "attn.c_proj.bias": "self_attn.o_proj.bias",
    "attn.q_norm.weight": "self_attn.q_norm.weight",
    "attn.k_norm.weight": "self_attn.k_norm.weight",
    "mlp.c_proj.weight": "mlp.down_proj.weight",
    "mlp.c_proj.bias": "mlp.down_proj.bias",
}
# our fused tensors -> the tensors they stack, in order
FUSED = {
    "attn.c_attn": ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"),
    "mlp.c_fc": ("mlp.gate_proj", "mlp.up_proj"),
}


def is_llama_format(fmt: ExportFormat) -> bool:
    return fmt.name in FORMAT_TYPES


def llama_config_from_gpt(config: GPTConfig, fmt: ExportFormat, extra: dict) -> dict:
    """A Llama / Qwen3 config.json dict for our config. extra: more entries (our own, the special tokens)."""
    model_type = FORMAT_TYPES[fmt.name]
    hf = {
        "architectures": [ARCHITECTURES[model_type]],
        "model_type": model_type,
        "vocab_size": config.vocab_size,
        "hidden_size": config.n_embd,
        "intermediate_size": config.swiglu_hidden,
        "num_hidden_layers": config.n_layer,
        "num_attention_heads": config.n_head,
        "num_key_value_heads": config.n_head,
        "head_dim": config.n_embd // config.n_head,
        "hidden_act": "silu",
        "max_position_embeddings": config.block_size,
        "rms_norm_eps": RMS_NORM_EPS,
        "rope_parameters": {"rope_type": "default", "rope_theta": config.rope_base},
        "tie_word_embeddings": config.tie_embeddings,
        "attention_bias": config.bias,
        "attention_dropout": config.dropout,
        "initializer_range": 0.02,
        "dtype": "float32",
        **extra,
    }
    if model_type == "llama":
        hf["mlp_bias"] = config.bias
    else:
        hf.update(use_sliding_window=False, sliding_window=None)
    return hf


def gpt_config_from_llama(hf: dict) -> GPTConfig:
    """Our GPTConfig from a Llama / Qwen3 config.json dict, refusing what our GPT cannot compute the same way."""
    model_type = hf["model_type"]
    n_embd, n_head = hf.get("hidden_size", 4096), hf.get("num_attention_heads", 32)
    rope = hf.get("rope_parameters") or {"rope_type": "default", "rope_theta": hf.get("rope_theta", 10000.0)}
    bias = hf.get("attention_bias", False)
    required = {
        "num_key_value_heads": (hf.get("num_key_value_heads", n_head), n_head),
        "head_dim": (hf.get("head_dim") or n_embd // n_head, n_embd // n_head),
        "hidden_act": (hf.get("hidden_act", "silu"), "silu"),
        "rms_norm_eps": (hf.get("rms_norm_eps"), RMS_NORM_EPS),
        "rope_type": (rope.get("rope_type", "default"), "default"),
        "mlp_bias": (hf.get("mlp_bias", False) if model_type == "llama" else bias, bias),
        "use_sliding_window": (hf.get("use_sliding_window", False), False),
    }
    for name, (value, wanted) in required.items():
        if value != wanted:
            raise UserError(
                f"This {model_type} config has {name}={value!r}, which our GPT does not implement (it needs "
                f"{wanted!r}); convert such a model with transformers instead."
            )
    config = GPTConfig(
        vocab_size=hf.get("vocab_size", 32000),
        block_size=hf.get("max_position_embeddings", 2048),
        n_layer=hf.get("num_hidden_layers", 32),
        n_head=n_head,
        n_embd=n_embd,
        bias=bias,
        rope=True,
        rope_base=float(rope.get("rope_theta", 10000.0)),
        norm="rmsnorm",
        qk_norm=model_type == "qwen3",
        mlp="swiglu",
        tie_embeddings=hf.get("tie_word_embeddings", model_type == "qwen3"),
    )
    intermediate = hf.get("intermediate_size")
    if intermediate != config.swiglu_hidden:
        raise UserError(
            f"This {model_type} config has intermediate_size={intermediate}, but our SwiGLU's hidden size for "
            f"hidden_size {n_embd} is {config.swiglu_hidden} (8 * hidden_size / 3 to a multiple of 8); convert such "
            "a model with transformers instead."
        )
    return config


def llama_state_dict(sd: dict, config: GPTConfig) -> dict:
    """A Llama / Qwen3 state dict (`model.` names, lm_head only when untied) from our GPT's."""
    out = {}
    for key, value in check_state_dict(sd, config).items():
        value = value.detach()
        if key == "transformer.wte.weight":
            out["model.embed_tokens.weight"] = value
        elif key == "transformer.ln_f.weight":
            out["model.norm.weight"] = value
        elif key == "lm_head.weight":
            if not config.tie_embeddings:
                out[key] = value
        else:
            layer, rest = re.fullmatch(r"transformer\.h\.(\d+)\.(.+)", key).groups()
            prefix = f"model.layers.{layer}."
            fused, kind = rest.rsplit(".", 1)  # e.g. ("attn.c_attn", "weight")
            if fused in FUSED:
                for name, part in zip(FUSED[fused], value.chunk(len(FUSED[fused]), dim=0)):
                    out[f"{prefix}{name}.{kind}"] = part
            else:
                out[prefix + ONE_TO_ONE[rest]] = value
    return {k: v.contiguous() for k, v in out.items()}


def llama_to_state_dict(hf_sd: dict, config: GPTConfig) -> dict:
    """Our GPT's state dict from a Llama / Qwen3 one (the inverse of llama_state_dict)."""
    theirs = {k.removeprefix("model."): v.float() if v.is_floating_point() else v for k, v in hf_sd.items()}
    if config.tie_embeddings:
        theirs.pop("lm_head.weight", None)  # tied: the embedding's copy, if a file has one
    sd = {"transformer.wte.weight": theirs.pop("embed_tokens.weight", None)}
    sd["transformer.ln_f.weight"] = theirs.pop("norm.weight", None)
    if "lm_head.weight" in theirs:
        sd["lm_head.weight"] = theirs.pop("lm_head.weight")
    for i in range(config.n_layer):
        for ours, name in ONE_TO_ONE.items():
            if f"layers.{i}.{name}" in theirs:
                sd[f"transformer.h.{i}.{ours}"] = theirs.pop(f"layers.{i}.{name}")
        for ours, names in FUSED.items():
            for kind in ("weight", "bias"):
                parts = [theirs.pop(f"layers.{i}.{name}.{kind}", None) for name in names]
                if all(p is not None for p in parts):
                    sd[f"transformer.h.{i}.{ours}.{kind}"] = torch.cat(parts, dim=0)
    sd = {k: v for k, v in sd.items() if v is not None}
    theirs = {k: v for k, v in theirs.items() if not k.endswith("rotary_emb.inv_freq")}  # old files' buffer
    if theirs:
        raise UserError(
            f"The weights hold tensors our GPT has no place for ({', '.join(sorted(theirs)[:3])}); the file does not "
            "match its config.json."
        )
    return check_state_dict(sd, config)
