"""nanoGPT's files, written as nanoGPT writes them (nanoGPT itself is not installed here): out-*/ckpt.pt as its
train.py saves it ({model, optimizer, model_args, iter_num, best_val_loss, config}), and data/<dataset>/ as its
prepare.py scripts write it (train.bin, val.bin: raw uint16; meta.pkl {vocab_size, itos, stoi} for characters).
Both vocabularies, with and without torch.compile's `_orig_mod.` prefix and the causal-mask buffers."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import torch

from gpt_lightning.model import GPT, GPTConfig

TEXT = "First Citizen:\nBefore we proceed any further, hear me speak.\nAll:\nSpeak, speak.\n" * 30
CHARS = sorted(set(TEXT))
BLOCK = 16
SCHEDULE = dict(
    learning_rate=1e-3,
    min_lr=1e-4,
    warmup_iters=5,
    lr_decay_iters=40,
    decay_lr=True,
    weight_decay=0.1,
    beta1=0.9,
    beta2=0.99,
)


# ------------------------------------------------------------------ fixtures written as nanoGPT writes them


def lively_gpt(vocab_size: int, seed: int = 0) -> GPT:
    """A tiny GPT with large random weights, so that greedy continuations vary with the context and the
    top two logits are far apart (no near-ties for rounding to flip)."""
    torch.manual_seed(seed)
    model = GPT(GPTConfig(vocab_size=vocab_size, block_size=BLOCK, n_layer=2, n_head=2, n_embd=16, bias=True))
    for p in model.parameters():
        torch.nn.init.normal_(p, std=0.5)
    if vocab_size > 50257:
        with torch.no_grad():  # the padding ids nanoGPT adds (50304) are never targets: training leaves them unlikely
            model.transformer.wte.weight[50257:] = 0.0
    return model.eval()


def nanogpt_optimizer(model: GPT, steps: int = 3) -> torch.optim.AdamW:
    """nanoGPT's configure_optimizers: named_parameters (the tied wte/lm_head once), decay = dim >= 2 first,
    then the rest; then a few steps on random gradients so that every state differs."""
    params = dict(model.named_parameters())
    decay = [p for p in params.values() if p.dim() >= 2]
    nodecay = [p for p in params.values() if p.dim() < 2]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": 0.1}, {"params": nodecay, "weight_decay": 0.0}], lr=1e-3, betas=(0.9, 0.99)
    )
    gen = torch.Generator().manual_seed(1)
    for _ in range(steps):
        for p in params.values():
            p.grad = torch.randn(p.shape, generator=gen)
        opt.step()
    return opt


def write_nanogpt_run(
    folder: Path, vocab: str, compiled: bool, mask_buffers: bool, dataset: str = "shakespeare_char", iter_num: int = 30
) -> tuple[Path, GPT, dict]:
    """out-*/ckpt.pt as nanoGPT's train.py saves it; returns its path, the model and the saved dict."""
    model = lively_gpt(len(CHARS) if vocab == "char" else 50304)
    weights = model.state_dict()
    opt = nanogpt_optimizer(model)
    model.load_state_dict(weights)  # the steps above only made optimizer state
    sd = {}
    for key, value in model.state_dict().items():
        if mask_buffers and key.endswith("attn.c_attn.weight"):  # no flash attention: the mask buffer, before c_attn
            sd[key.replace("c_attn.weight", "bias")] = torch.tril(torch.ones(BLOCK, BLOCK)).view(1, 1, BLOCK, BLOCK)
        sd[key] = value
    if compiled:
        sd = {f"_orig_mod.{k}": v for k, v in sd.items()}
    c = model.config
    model_args = dict(
        n_layer=c.n_layer,
        n_head=c.n_head,
        n_embd=c.n_embd,
        block_size=c.block_size,
        bias=c.bias,
        vocab_size=c.vocab_size,
        dropout=0.2,
    )
    config = dict(
        out_dir=str(folder),
        eval_interval=250,
        log_interval=10,
        eval_iters=200,
        eval_only=False,
        always_save_checkpoint=False,
        init_from="scratch",
        wandb_log=False,
        dataset=dataset,
        gradient_accumulation_steps=1,
        batch_size=64,
        block_size=BLOCK,
        n_layer=2,
        n_head=2,
        n_embd=16,
        dropout=0.2,
        bias=True,
        max_iters=40,
        grad_clip=1.0,
        backend="nccl",
        device="cuda",
        dtype="bfloat16",
        compile=compiled,
        **SCHEDULE,
    )
    ckpt = {
        "model": sd,
        "optimizer": opt.state_dict(),
        "model_args": model_args,
        "iter_num": iter_num,
        "best_val_loss": torch.tensor(1.4697),
        "config": config,
    }
    folder.mkdir(parents=True, exist_ok=True)
    torch.save(ckpt, folder / "ckpt.pt")
    return folder / "ckpt.pt", model, ckpt


def write_meta_pkl_as_nanogpt(folder: Path) -> Path:
    """data/shakespeare_char/meta.pkl as nanoGPT's prepare.py writes it."""
    folder.mkdir(parents=True, exist_ok=True)
    meta = {"vocab_size": len(CHARS), "itos": dict(enumerate(CHARS)), "stoi": {ch: i for i, ch in enumerate(CHARS)}}
    with open(folder / "meta.pkl", "wb") as f:
        pickle.dump(meta, f)
    return folder / "meta.pkl"


def write_nanogpt_data(folder: Path, vocab: str) -> Path:
    """train.bin / val.bin (raw uint16) and, for characters, meta.pkl: nanoGPT's data/<dataset>/."""
    if vocab == "char":
        write_meta_pkl_as_nanogpt(folder)
        ids = np.array([CHARS.index(c) for c in TEXT], dtype=np.uint16)
    else:
        folder.mkdir(parents=True, exist_ok=True)
        ids = np.random.default_rng(0).integers(0, 50257, size=4000).astype(np.uint16)
    n = int(len(ids) * 0.9)
    ids[:n].tofile(folder / "train.bin")
    ids[n:].tofile(folder / "val.bin")
    return folder


class Payload:
    """Unpickling this calls os.system: what a crafted meta.pkl would do to a plain pickle.load."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def crafted_meta_pkl(folder: Path, marker: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    meta = {"vocab_size": len(CHARS), "itos": dict(enumerate(CHARS)), "stoi": Payload(marker)}
    (folder / "meta.pkl").write_bytes(pickle.dumps(meta))
    return folder / "meta.pkl"
