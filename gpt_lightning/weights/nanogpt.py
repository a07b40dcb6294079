"""nanoGPT's own files, both ways: its `ckpt.pt`, its `meta.pkl` and its data folders.

What nanoGPT writes (train.py, sample.py, data/*/prepare.py):
- `ckpt.pt`: {model, optimizer, model_args, iter_num, best_val_loss, config}. `model` is the GPT's state dict
  (keys start with `_orig_mod.` when the model was compiled; `transformer.h.N.attn.bias` causal-mask buffers
  are there when PyTorch had no flash attention). Our GPT has nanoGPT's parameter names, so the weights load
  as they are. `optimizer` is AdamW's state dict over two groups, matrices (dim >= 2, decayed) then the rest,
  each in `named_parameters()` order. `config` holds every training global (plain values), `dataset` among them.
- `data/<dataset>/meta.pkl` (character datasets only): a pickled {vocab_size, itos, stoi}. sample.py reads it
  from `data/<config['dataset']>/meta.pkl` relative to the working directory and assumes GPT-2's BPE without it.
- `train.bin` / `val.bin`: raw uint16 token ids, nothing else (data/nanogpt.py reads such a folder).

meta.pkl is read without running code by gpt_lightning/meta_pkl.py.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import torch

from gpt_lightning.errors import UserError
from gpt_lightning.meta_pkl import (
    GPT2_BPE_VOCAB,
    GPT2_TOKENIZER,
    META_PKL,
    PathLike,
    nanogpt_meta_file,
    tokenizer_from_meta_pkl,
)
from gpt_lightning.model import GPT, GPTConfig
from gpt_lightning.weights.formats import NANOGPT, choose_format
from gpt_lightning.weights.state_dict import FOREIGN_BUFFERS, strip_wrapper_prefixes, unpad_token_rows

# The fields of nanoGPT's GPTConfig: model_args must hold exactly these, or GPTConfig(**model_args) fails there.
MODEL_ARGS = ("n_layer", "n_head", "n_embd", "block_size", "bias", "vocab_size", "dropout")


# ---------------------------------------------------------------- the tokenizer of a nanoGPT checkpoint


def is_nanogpt_checkpoint(checkpoint: dict) -> bool:
    return "model_args" in checkpoint and "model" in checkpoint and "state_dict" not in checkpoint


def meta_pkl_candidates(ckpt_path: PathLike, checkpoint: dict) -> list[Path]:
    """Where a nanoGPT checkpoint's meta.pkl may be, in order: sample.py's `data/<config['dataset']>/meta.pkl`
    relative to the working directory, then beside the checkpoint (where `export --format nanogpt` puts it)."""
    config = checkpoint.get("config")
    dataset = config.get("dataset") if isinstance(config, dict) else None
    candidates = [Path("data") / dataset / META_PKL] if isinstance(dataset, str) and dataset else []
    candidates.append(Path(ckpt_path).parent / META_PKL)
    return candidates


def nanogpt_tokenizer(
    ckpt_path: PathLike, checkpoint: dict, vocab_size: int, meta: Optional[PathLike] = None, required: bool = True
) -> Optional[dict]:
    """The tokenizer of a nanoGPT checkpoint, found as nanoGPT's sample.py finds it: the meta.pkl given, else
    the first meta.pkl of meta_pkl_candidates, else GPT-2's BPE (for a vocabulary of GPT-2's size or more).
    When none fits, a UserError naming the paths tried (or None when not `required`)."""
    if meta is not None:
        path = nanogpt_meta_file(meta)
        if not path.is_file():
            raise UserError(f"--meta {meta}: {path} does not exist; pass data/<dataset>/meta.pkl or its folder.")
        found = [path]
    else:
        found = [p for p in meta_pkl_candidates(ckpt_path, checkpoint) if p.is_file()][:1]
    if found:
        tokenizer = tokenizer_from_meta_pkl(found[0])
        if len(tokenizer["chars"]) > vocab_size:
            raise UserError(
                f"{found[0]} has {len(tokenizer['chars'])} tokens but the model of {ckpt_path} only {vocab_size}: "
                "it is another dataset's meta.pkl; pass the right one with --meta."
            )
        print(f"{ckpt_path}: characters from {found[0]}", file=sys.stderr)
        return tokenizer
    if vocab_size >= GPT2_BPE_VOCAB:
        return dict(GPT2_TOKENIZER)  # as sample.py: no meta.pkl means GPT-2's BPE
    if not required:
        return None
    tried = ", ".join(str(p) for p in meta_pkl_candidates(ckpt_path, checkpoint))
    raise UserError(
        f"{ckpt_path} is a nanoGPT checkpoint with a {vocab_size}-token vocabulary, too small for GPT-2's BPE, and no "
        f"meta.pkl was found (tried {tried}); pass its dataset's meta.pkl with --meta path/to/data/<dataset>/meta.pkl."
    )


# ---------------------------------------------------------------- the optimizer state, by parameter name


def optimizer_param_names(named_shapes: list[tuple[str, torch.Size]]) -> list[str]:
    """The names of the parameters in the order an AdamW state dict numbers them, for nanoGPT's (and our)
    grouping: matrices (dim >= 2, decayed) first, then the rest, each in named_parameters() order."""
    return [n for n, s in named_shapes if len(s) >= 2] + [n for n, s in named_shapes if len(s) < 2]


def nanogpt_parameter_shapes(model_sd: dict) -> list[tuple[str, torch.Size]]:
    """(name, shape) of nanoGPT's parameters in named_parameters() order, from its state dict: the buffers
    left out, and lm_head.weight, which is wte's tensor and so named once, as transformer.wte.weight."""
    sd = strip_wrapper_prefixes(model_sd)
    return [(k, v.shape) for k, v in sd.items() if not k.endswith(FOREIGN_BUFFERS) and k != "lm_head.weight"]


def model_parameter_shapes(model: torch.nn.Module) -> list[tuple[str, torch.Size]]:
    """(name, shape) in named_parameters() order, the tied lm_head / wte under its nanoGPT name."""
    out = [(n, p.shape) for n, p in model.named_parameters()]
    return [("transformer.wte.weight" if n == "lm_head.weight" else n, s) for n, s in out]


def optimizer_state_by_name(checkpoint: dict, source: PathLike) -> dict[str, dict]:
    """nanoGPT's AdamW state (exp_avg, exp_avg_sq, step) of each parameter, by parameter name."""
    opt = checkpoint.get("optimizer")
    if not isinstance(opt, dict) or "state" not in opt or len(opt.get("param_groups", ())) != 2:
        raise UserError(
            f"{source} holds no AdamW state of nanoGPT's two parameter groups; leave --model.init_optimizer_state "
            "unset to start from its weights only."
        )
    shapes = dict(nanogpt_parameter_shapes(checkpoint["model"]))
    names = optimizer_param_names(list(shapes.items()))
    ids = [i for group in opt["param_groups"] for i in group["params"]]
    n_decay = sum(1 for s in shapes.values() if len(s) >= 2)
    if len(ids) != len(names) or len(opt["param_groups"][0]["params"]) != n_decay:
        raise UserError(
            f"{source}'s optimizer has {len(ids)} parameters in groups of {len(opt['param_groups'][0]['params'])} and "
            f"{len(opt['param_groups'][1]['params'])}, not nanoGPT's {n_decay} matrices and {len(names) - n_decay} "
            "others; leave --model.init_optimizer_state unset to start from its weights only."
        )
    by_name = {}
    for name, i in zip(names, ids):
        state = opt["state"].get(i)
        if state is None:
            continue  # never stepped (nanoGPT saves after its first step, so this is rare)
        if "exp_avg" in state and state["exp_avg"].shape != shapes[name]:
            raise UserError(
                f"{source}'s optimizer state of {name} has shape {tuple(state['exp_avg'].shape)}, not "
                f"{tuple(shapes[name])}: the file's optimizer does not belong to its model."
            )
        by_name[name] = state
    return by_name


def _cropped(state: dict, shape: torch.Size) -> dict:
    """A parameter's AdamW state for its rows kept: init_from crops the token table to the data's vocabulary
    and the position table to block_size (as nanoGPT's crop_block_size), and Adam's moments are per element."""
    out = dict(state)
    for key in ("exp_avg", "exp_avg_sq"):
        v = state.get(key)
        if v is not None and v.shape != shape:
            if v.shape[1:] != shape[1:] or v.shape[0] < shape[0]:
                raise UserError(f"nanoGPT's optimizer state {tuple(v.shape)} does not fit a parameter {tuple(shape)}.")
            out[key] = v[: shape[0]].clone()
    return out


def load_optimizer_state_by_name(optimizer: torch.optim.Optimizer, names: dict[int, str], by_name: dict) -> None:
    """Put each parameter's state from by_name into optimizer (whose parameters are named by id in names)."""
    ours = [p for group in optimizer.param_groups for p in group["params"]]  # the numbering of state_dict()
    missing = [names.get(id(p), "?") for p in ours if names.get(id(p)) not in by_name]
    if missing:
        raise UserError(
            f"The nanoGPT checkpoint has no optimizer state for {missing[:3]}; leave --model.init_optimizer_state "
            "unset to start from its weights only."
        )
    state = {i: _cropped(by_name[names[id(p)]], p.shape) for i, p in enumerate(ours)}
    optimizer.load_state_dict({"state": state, "param_groups": optimizer.state_dict()["param_groups"]})


# ---------------------------------------------------------------- reading a run to continue


@dataclass
class NanoGPTRun:
    """What `--model.init_optimizer_state` continues from: the step and the AdamW state by parameter name,
    plus nanoGPT's training config (to say where this run's schedule differs from it)."""

    iter_num: int
    optimizer_state: dict[str, dict]
    config: dict


def nanogpt_run(checkpoint: dict, source: PathLike) -> NanoGPTRun:
    iter_num = checkpoint.get("iter_num")
    if not isinstance(iter_num, int) or iter_num < 0:
        what = "has no iter_num" if iter_num is None else f"has iter_num {iter_num!r}, not a step count (0 or more)"
        raise UserError(
            f"{source} {what}, so the step to continue from is unknown; leave --model.init_optimizer_state unset."
        )
    config = checkpoint.get("config") if isinstance(checkpoint.get("config"), dict) else {}
    return NanoGPTRun(iter_num, optimizer_state_by_name(checkpoint, source), config)


# nanoGPT's config name -> our --model option, for the settings that decide the LR and the AdamW update
SCHEDULE_SETTINGS = {
    "learning_rate": "learning_rate",
    "min_lr": "min_lr",
    "warmup_iters": "warmup_steps",
    "lr_decay_iters": "lr_decay_steps",
    "decay_lr": "decay_lr",
    "weight_decay": "weight_decay",
    "beta1": "beta1",
    "beta2": "beta2",
}


def check_nanogpt_schedule(hparams: dict) -> None:
    """nanoGPT's train.py knows warmup + cosine (decay_lr true) and a constant LR (decay_lr false): refuse to
    write settings that would claim either for a run trained with another schedule."""
    schedule = hparams.get("lr_schedule", "cosine") if hparams.get("decay_lr", True) else "constant"
    if schedule not in ("cosine", "constant"):
        raise UserError(
            f"This run's LR schedule is {schedule!r}, which nanoGPT's train.py cannot express (it has warmup + "
            "cosine, or a constant LR), so its ckpt.pt would claim another schedule; export with --format hf."
        )


def schedule_differences(config: dict, hparams: dict) -> list[str]:
    """`--model.X=ours (nanoGPT: theirs)` for each schedule setting this run sets differently."""
    return [
        f"--model.{ours}={hparams[ours]} (nanoGPT: {name}={config[name]})"
        for name, ours in SCHEDULE_SETTINGS.items()
        if name in config and ours in hparams and config[name] != hparams[ours]
    ]


# ---------------------------------------------------------------- writing nanoGPT's ckpt.pt


def _unpadded_optimizer_state(optimizer_state: Optional[dict], index: int, rows: int) -> Optional[dict]:
    """optimizer_state with the token table's (parameter `index`) moments cut to its first `rows` rows."""
    state = (optimizer_state or {}).get("state", {})
    if index not in state:
        return optimizer_state
    cut = {k: v[:rows] if k in ("exp_avg", "exp_avg_sq") else v for k, v in state[index].items()}
    return {**optimizer_state, "state": {**state, index: cut}}


def to_nanogpt_checkpoint(
    config: GPTConfig,
    sd: dict,
    *,
    dataset: str,
    iter_num: int = 0,
    best_val_loss: Optional[float] = None,
    optimizer_state: Optional[dict] = None,
    train_config: Optional[dict] = None,
) -> dict:
    """nanoGPT's ckpt.pt dict for our GPT's weights: the model's state dict with nanoGPT's key order and no
    prefixes, model_args with exactly the fields of nanoGPT's GPTConfig, and `optimizer_state` (our AdamW
    state dict, numbered as our configure_optimizers numbers it) renumbered into nanoGPT's groups."""
    choose_format(config, [NANOGPT], "--format nanogpt")  # e.g. GPT-2's tanh GELU: nanoGPT computes the exact one
    if config.padded_vocab_size != config.vocab_size:
        # nanoGPT would sample padding ids (it does not mask them) and tiktoken cannot decode them: drop the rows,
        # in the weights and in AdamW's moments of the token table
        with torch.device("meta"):
            wte_index = optimizer_param_names(model_parameter_shapes(GPT(config))).index("transformer.wte.weight")
        sd, config = unpad_token_rows(sd, config)
        optimizer_state = _unpadded_optimizer_state(optimizer_state, wte_index, config.vocab_size)
    with torch.device("meta"):
        names = model_parameter_shapes(GPT(config))
        order = list(GPT(config).state_dict())
    model = {k: sd[k].detach().contiguous() for k in order}  # nanoGPT's order (same modules), lm_head included
    model["lm_head.weight"] = model["transformer.wte.weight"]  # one tensor, saved once, as nanoGPT's tie
    ours = optimizer_param_names(names)  # our configure_optimizers' grouping and numbering are nanoGPT's
    shapes = dict(names)
    n_decay = sum(1 for _, s in names if len(s) >= 2)
    state, groups = {}, None
    saved = (optimizer_state or {}).get("state", {})
    if len(saved) == len(ours) and all(saved[i]["exp_avg"].shape == shapes[n] for i, n in enumerate(ours)):
        by_name = {name: saved[i] for i, name in enumerate(ours)}
        theirs = optimizer_param_names(nanogpt_parameter_shapes(model))
        state = {i: by_name[name] for i, name in enumerate(theirs)}
        groups = optimizer_state["param_groups"]
    elif optimizer_state:
        print(
            "note: the checkpoint's optimizer state does not fit the model (sharded?): ckpt.pt gets none.",
            file=sys.stderr,
        )
    if groups is None:  # AdamW's defaults for the run's settings, so nanoGPT's load_state_dict finds every key
        t = train_config or {}
        with torch.device("meta"):
            params = [torch.empty(s) for _, s in sorted(names, key=lambda x: len(x[1]) < 2)]
            adam = torch.optim.AdamW(
                [
                    {"params": params[:n_decay], "weight_decay": t.get("weight_decay", 0.1)},
                    {"params": params[n_decay:], "weight_decay": 0.0},
                ],
                lr=t.get("learning_rate", 6e-4),
                betas=(t.get("beta1", 0.9), t.get("beta2", 0.95)),
            )
        groups = adam.state_dict()["param_groups"]
    param_groups = [
        {**groups[0], "params": list(range(n_decay))},
        {**groups[1], "params": list(range(n_decay, len(ours)))},
    ]
    model_args = {k: getattr(config, k) for k in MODEL_ARGS}
    return {
        "model": model,
        "optimizer": {"state": state, "param_groups": param_groups},
        "model_args": model_args,
        "iter_num": iter_num,
        "best_val_loss": torch.tensor(1e9 if best_val_loss is None else float(best_val_loss)),
        "config": {**(train_config or {}), **model_args, "dataset": dataset},
    }
