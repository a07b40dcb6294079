"""--model.optimizer: which tensor goes to Muon and which to AdamW, and the one Optimizer that holds both."""

import copy
import logging

import pytest
import torch

from gpt_lightning.errors import UserError
from gpt_lightning.train.clipping import fused_adamw_options
from gpt_lightning.train.module import GPTLightningModule
from gpt_lightning.train.optimizers import MuonWithAdamW, check_muon_available, check_strategy_supports_muon

N_LAYER = 2


def tiny_module(**kw) -> GPTLightningModule:
    args = dict(vocab_size=17, block_size=8, n_layer=N_LAYER, n_head=2, n_embd=16, bias=True, compile=False)
    args.update(kw)
    return GPTLightningModule(**args)


def names_of(module, params) -> set[str]:
    ids = {id(p) for p in params}
    return {n for n, p in module.model.named_parameters() if id(p) in ids}


def test_muon_takes_the_block_matrices_and_adamw_the_rest(caplog):
    module = tiny_module(optimizer="muon", weight_decay=0.1, muon_lr=0.02, muon_momentum=0.9, muon_weight_decay=0.05)
    with caplog.at_level(logging.INFO):
        opt = module.configure_optimizers()["optimizer"]
    assert isinstance(opt, MuonWithAdamW)
    decay, no_decay, muon = opt.param_groups
    hidden = {
        f"transformer.h.{i}.{w}.weight"
        for i in range(N_LAYER)
        for w in ("attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj")
    }
    assert names_of(module, muon["params"]) == hidden
    assert muon["initial_lr"] == 0.02 and muon["momentum"] == 0.9 and muon["weight_decay"] == 0.05
    assert muon["adjust_lr_fn"] == "match_rms_adamw"
    # the embeddings (wte is also the tied lm_head) decay on AdamW; every 1-D tensor is AdamW's, undecayed
    assert names_of(module, decay["params"]) == {"transformer.wte.weight", "transformer.wpe.weight"}
    assert module.model.lm_head.weight is module.model.transformer.wte.weight
    assert decay["weight_decay"] == 0.1 and "betas" in decay
    ones = {n for n, p in module.model.named_parameters() if p.dim() == 1}
    assert names_of(module, no_decay["params"]) == ones and no_decay["weight_decay"] == 0.0
    # muon_lr defaults to learning_rate
    default = tiny_module(optimizer="muon", learning_rate=2e-3).configure_optimizers()["optimizer"]
    assert default.param_groups[2]["initial_lr"] == 2e-3
    # every parameter exactly once
    assert sum(len(g["params"]) for g in opt.param_groups) == len(list(module.model.parameters()))
    muon_numel = sum(p.numel() for p in muon["params"])
    assert f"Muon: {len(hidden)} hidden-matrix tensors ({muon_numel:,} parameters)" in caplog.text
    assert "AdamW: 2 decayed tensors" in caplog.text and f"{len(ones)} non-decayed tensors" in caplog.text


def test_adamw_mode_is_nanogpts_two_groups():
    module = tiny_module(weight_decay=0.1)
    opt = module.configure_optimizers()["optimizer"]
    assert type(opt) is torch.optim.AdamW
    decay, no_decay = opt.param_groups
    assert [id(p) for p in decay["params"]] == [id(p) for p in module.model.parameters() if p.dim() == 2]
    assert [id(p) for p in no_decay["params"]] == [id(p) for p in module.model.parameters() if p.dim() == 1]


def fake_gradients(model: torch.nn.Module, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    for p in model.parameters():
        p.grad = torch.randn(p.shape, generator=g)


def test_combined_step_and_state_equal_the_two_torch_optimizers():
    """MuonWithAdamW adds no arithmetic: its steps are torch's AdamW and Muon steps, and a state_dict round trip
    (what a checkpoint does) continues them exactly."""
    module = tiny_module(optimizer="muon", learning_rate=1e-2, muon_lr=1e-2, decay_lr=False)
    opt = module.configure_optimizers()  # decay_lr=False: the optimizer alone, at the peak learning rates
    twin = copy.deepcopy(module.model)
    by_name = dict(twin.named_parameters())
    twin_groups = [[by_name[n] for n in names_of(module, g["params"])] for g in opt.param_groups]
    adamw = torch.optim.AdamW(
        [{"params": twin_groups[0], "weight_decay": 0.1}, {"params": twin_groups[1], "weight_decay": 0.0}],
        lr=1e-2,
        betas=(0.9, 0.95),
        **fused_adamw_options(module.device, None),  # fused, as the module's
    )
    muon = torch.optim.Muon(twin_groups[2], lr=1e-2, momentum=0.95, weight_decay=0.1, adjust_lr_fn="match_rms_adamw")
    for step in range(3):
        fake_gradients(module.model, step)
        fake_gradients(twin, step)
        opt.step()
        adamw.step()
        muon.step()
    for name, p in module.model.named_parameters():
        torch.testing.assert_close(p, by_name[name], rtol=0, atol=0)
    state = opt.state_dict()
    assert {"exp_avg", "momentum_buffer"} <= {k for s in state["state"].values() for k in s}

    # a fresh optimizer loaded from the state continues exactly as the original
    resumed_module = copy.deepcopy(module)
    resumed = resumed_module.configure_optimizers()
    resumed.load_state_dict(copy.deepcopy(state))
    for step in range(3, 5):
        fake_gradients(module.model, step)
        fake_gradients(resumed_module.model, step)
        opt.step()
        resumed.step()
    for (name, p), q in zip(module.model.named_parameters(), resumed_module.model.parameters()):
        torch.testing.assert_close(p, q, rtol=0, atol=0, msg=name)
    # after loading, the scheduler's view (param_groups) is still the inner optimizers' view
    resumed.param_groups[2]["lr"] = 0.0
    assert resumed.muon.param_groups[0]["lr"] == 0.0


def test_torch_without_muon_is_refused_naming_the_version(monkeypatch):
    monkeypatch.delattr(torch.optim, "Muon")
    with pytest.raises(UserError, match=r"needs torch >= 2\.9 \(torch\.optim\.Muon\)"):
        check_muon_available()
    with pytest.raises(UserError, match="use --model.optimizer adamw"):
        tiny_module(optimizer="muon")


def test_sharding_strategies_are_refused():
    from lightning.pytorch.strategies import DDPStrategy, FSDPStrategy, SingleDeviceStrategy

    check_strategy_supports_muon(SingleDeviceStrategy("cpu"))
    check_strategy_supports_muon(DDPStrategy())
    with pytest.raises(UserError, match="FSDPStrategy strategy shards"):
        check_strategy_supports_muon(FSDPStrategy())


def test_continuing_nanogpts_adamw_state_with_muon_is_refused():
    with pytest.raises(UserError, match="init_optimizer_state continues nanoGPT's AdamW state, which has no Muon part"):
        tiny_module(optimizer="muon", init_optimizer_state=True)
