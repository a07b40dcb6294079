import pytest
import torch

from gpt_lightning.train.module import GPTLightningModule
from gpt_lightning.train.schedules import lr_at

SCHEDULE = dict(learning_rate=1e-3, warmup_steps=100, lr_decay_steps=5000, min_lr=1e-4)


def test_lr_schedule_values():
    assert lr_at(0, **SCHEDULE) == pytest.approx(1e-3 / 101)  # the first step already learns
    assert lr_at(0, **SCHEDULE) > 0
    assert lr_at(50, **SCHEDULE) == pytest.approx(1e-3 * 51 / 101)
    assert lr_at(100, **SCHEDULE) == pytest.approx(1e-3)  # end of warmup: the peak
    assert lr_at(2550, **SCHEDULE) == pytest.approx((1e-3 + 1e-4) / 2)  # half way down the cosine
    assert lr_at(5000, **SCHEDULE) == pytest.approx(1e-4)
    assert lr_at(7000, **SCHEDULE) == pytest.approx(1e-4)
    lrs = [lr_at(s, **SCHEDULE) for s in range(100, 5001)]
    assert all(a >= b for a, b in zip(lrs, lrs[1:]))  # monotone decay


def tiny_module(**kw) -> GPTLightningModule:
    args = dict(vocab_size=17, block_size=8, n_layer=2, n_head=2, n_embd=16, bias=True, compile=False)
    args.update(kw)
    return GPTLightningModule(**args)


def test_weight_decay_groups():
    module = tiny_module(weight_decay=0.1)
    opt = module.configure_optimizers()["optimizer"]
    decay, no_decay = opt.param_groups
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    assert all(p.dim() >= 2 for p in decay["params"]) and all(p.dim() < 2 for p in no_decay["params"])
    # every parameter once (the tied embedding counts once), none forgotten
    n_all = sum(p.numel() for p in module.model.parameters())
    assert sum(p.numel() for g in opt.param_groups for p in g["params"]) == n_all
    names = {id(p): n for n, p in module.model.named_parameters()}
    decayed = {names[id(p)] for p in decay["params"]}
    assert "transformer.wte.weight" in decayed and "transformer.h.0.attn.c_attn.weight" in decayed
    not_decayed = {names[id(p)] for p in no_decay["params"]}
    assert "transformer.h.0.ln_1.weight" in not_decayed and "transformer.h.0.attn.c_attn.bias" in not_decayed


def test_scheduler_steps_per_optimizer_step_and_constant_lr_option():
    module = tiny_module(learning_rate=1e-3, warmup_steps=10, lr_decay_steps=20, min_lr=1e-4)
    conf = module.configure_optimizers()
    opt, sched = conf["optimizer"], conf["lr_scheduler"]["scheduler"]
    assert conf["lr_scheduler"]["interval"] == "step"
    seen = []
    for _ in range(25):
        seen.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert seen[0] == pytest.approx(1e-3 / 11)
    assert seen[10] == pytest.approx(1e-3)
    assert seen[20] == pytest.approx(1e-4) and seen[24] == pytest.approx(1e-4)
    constant = tiny_module(decay_lr=False, learning_rate=3e-5).configure_optimizers()
    assert isinstance(constant, torch.optim.AdamW) and constant.param_groups[0]["lr"] == 3e-5


def test_hyperparameters_rebuild_the_model():
    module = tiny_module(n_layer=3, tokenizer={"kind": "char", "chars": list("abc")})
    rebuilt = GPTLightningModule(**module.hparams)
    assert rebuilt.config == module.config
    assert rebuilt.hparams.tokenizer == {"kind": "char", "chars": "abc"}  # stored as one string
