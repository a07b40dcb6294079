"""The optimizers: nanoGPT's AdamW with decay groups, or Muon on the hidden matrices and AdamW on the rest.

`--model.optimizer adamw` (the default) is nanoGPT's recipe: every matrix decays, biases and norm weights
do not, one AdamW. `--model.optimizer muon` puts every 2-D weight inside the transformer blocks (attention and
MLP projections) on torch.optim.Muon (momentum orthogonalised by Newton-Schulz) and keeps AdamW, with the same
decay groups, on what Muon is not meant for: the embeddings wte / wpe (wte is also the tied lm_head) and every
1-D parameter.

Design: Lightning's automatic optimization (accumulation, clipping, AMP scaling, checkpoints, the non-finite
guard) handles exactly one optimizer; two would need manual optimization. So `MuonWithAdamW` is one
torch.optim.Optimizer whose param_groups ARE the group dicts of an inner AdamW and an inner Muon (AdamW's
first, in the order adamw mode has them) and whose `state` is one dict both inner optimizers write into (their
parameters are disjoint). Whatever Lightning or torch does through param_groups (the LR scheduler, gradient
clipping, zero_grad, the GradScaler) therefore reaches both, its state_dict() holds both states, and step()
runs AdamW's then Muon's own step. Nothing of torch's optimizer internals is reimplemented.
"""

from __future__ import annotations

from typing import Callable, Optional

import torch
from lightning.pytorch.utilities import rank_zero_info

from gpt_lightning.errors import UserError

OPTIMIZERS = ("adamw", "muon")
MUON_TORCH = "2.9"  # torch.optim.Muon first shipped in torch 2.9
# Moonshot's scaling ("Muon is Scalable for LLM Training"): Muon's update gets AdamW's RMS, so AdamW-like
# learning rates and weight decays apply to it.
MUON_ADJUST_LR = "match_rms_adamw"


def check_muon_available() -> None:
    """One sentence naming the torch that is needed, where the installed one has no torch.optim.Muon."""
    if getattr(torch.optim, "Muon", None) is None:
        raise UserError(
            f"--model.optimizer muon needs torch >= {MUON_TORCH} (torch.optim.Muon) but torch {torch.__version__} "
            "is installed; upgrade torch or use --model.optimizer adamw."
        )


def check_muon_options(init_optimizer_state: bool) -> None:
    if init_optimizer_state:
        raise UserError(
            "--model.init_optimizer_state continues nanoGPT's AdamW state, which has no Muon part; use it "
            "with --model.optimizer adamw, or leave it out to start Muon afresh from the nanoGPT weights."
        )


def check_strategy_supports_muon(strategy) -> None:
    """Muon orthogonalises whole matrices, so every rank must hold whole parameters (single device or DDP).
    FSDP and other sharding strategies hand the optimizer flattened or partial shards: refuse them."""
    from lightning.pytorch.strategies import DDPStrategy, SingleDeviceStrategy

    if strategy is not None and not isinstance(strategy, (SingleDeviceStrategy, DDPStrategy)):
        raise UserError(
            f"--model.optimizer muon needs whole weight matrices on every rank, which the {type(strategy).__name__} "
            "strategy shards; train with a single device or --trainer.strategy ddp, or use --model.optimizer adamw."
        )


# ------------------------------------------------------------ which tensor goes where


def adamw_groups(params: list[torch.nn.Parameter], matrix_ids: set[int], weight_decay: float) -> list[dict]:
    """nanoGPT's two AdamW groups: every matrix (Linear weights, embeddings) decays; biases and LayerNorm
    weights (1-D) do not. `matrix_ids` are the ids of the matrices, noted before FSDP flattens them."""
    decay = [p for p in params if id(p) in matrix_ids]
    no_decay = [p for p in params if id(p) not in matrix_ids]
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def is_hidden_matrix(name: str, p: torch.Tensor) -> bool:
    """Muon's share: a 2-D weight inside a transformer block (`transformer.h.N.*`: c_attn, c_proj, c_fc)."""
    return name.startswith("transformer.h.") and p.dim() == 2


def describe(kind: str, params: list[torch.nn.Parameter]) -> str:
    return f"{len(params)} {kind} tensors ({sum(p.numel() for p in params):,} parameters)"


# ------------------------------------------------------------ one optimizer for Lightning


class MuonWithAdamW(torch.optim.Optimizer):
    """torch.optim.AdamW and torch.optim.Muon behind one Optimizer (see the module docstring for why).

    param_groups: AdamW's groups, then Muon's. Each group keeps its own optimizer's keys (betas for AdamW,
    momentum for Muon), so a scheduler that scales group["lr"] drives both with one schedule.
    """

    def __init__(self, adamw: torch.optim.AdamW, muon: torch.optim.Optimizer) -> None:
        self.adamw, self.muon = adamw, muon
        # the inner group dicts themselves, not copies (no defaults: each group already has all its keys)
        super().__init__([*adamw.param_groups, *muon.param_groups], defaults={})
        self._share()

    def _share(self) -> None:
        """Point the inner optimizers at this optimizer's group dicts and state (again after loading)."""
        n = len(self.adamw.param_groups)
        self.adamw.param_groups, self.muon.param_groups = self.param_groups[:n], self.param_groups[n:]
        self.adamw.state = self.muon.state = self.state  # disjoint parameters: one dict holds both states

    @torch.no_grad()
    def step(self, closure: Optional[Callable[[], torch.Tensor]] = None):
        loss = None
        if closure is not None:  # Lightning's closure: forward and backward of the micro-batch(es)
            with torch.enable_grad():
                loss = closure()
        self.adamw.step()
        self.muon.step()
        return loss

    def load_state_dict(self, state_dict: dict) -> None:
        super().load_state_dict(state_dict)  # replaces param_groups' dicts and the state dict
        self._share()


# ------------------------------------------------------------ building, and the options given now on resume


def muon_lr(hp) -> float:
    """Muon's peak learning rate: --model.muon_lr, or learning_rate when it is None (match_rms_adamw makes
    AdamW's learning rate a sensible Muon one)."""
    return hp.learning_rate if hp.get("muon_lr") is None else hp.muon_lr


def muon_with_adamw(model: torch.nn.Module, hp, matrix_ids: set[int], adamw_kwargs: dict) -> MuonWithAdamW:
    """Muon on the block matrices of the GPT `model`, AdamW with nanoGPT's decay groups on its other trainable
    parameters; the split is printed once."""
    check_muon_available()
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    hidden = [p for n, p in named if is_hidden_matrix(n, p)]
    hidden_ids = {id(p) for p in hidden}
    groups = adamw_groups([p for _, p in named if id(p) not in hidden_ids], matrix_ids, hp.weight_decay)
    rank_zero_info(
        f"Muon: {describe('hidden-matrix', hidden)} | AdamW: {describe('decayed', groups[0]['params'])} "
        f"(embeddings, tied lm_head), {describe('non-decayed', groups[1]['params'])}"
    )
    adamw = torch.optim.AdamW(groups, lr=hp.learning_rate, betas=(hp.beta1, hp.beta2), **adamw_kwargs)
    muon = torch.optim.Muon(
        hidden,
        lr=muon_lr(hp),
        momentum=hp.muon_momentum,
        weight_decay=hp.muon_weight_decay,
        adjust_lr_fn=MUON_ADJUST_LR,
    )
    return MuonWithAdamW(adamw, muon)


def use_muon_hparams_given_now(trainer, hp) -> None:
    """resume.use_optimizer_hparams_given_now for MuonWithAdamW: the learning rates, betas, momentum and weight
    decays given now win over those restored from a checkpoint (on a fresh run this changes nothing)."""
    optimizer = trainer.optimizers[0]
    adamw_decay, adamw_rest, muon = optimizer.param_groups
    betas = (hp.beta1, hp.beta2)
    adamw_decay.update(betas=betas, weight_decay=hp.weight_decay, initial_lr=hp.learning_rate, lr=hp.learning_rate)
    adamw_rest.update(betas=betas, weight_decay=0.0, initial_lr=hp.learning_rate, lr=hp.learning_rate)
    muon.update(momentum=hp.muon_momentum, weight_decay=hp.muon_weight_decay, initial_lr=muon_lr(hp), lr=muon_lr(hp))
    for config in trainer.lr_scheduler_configs:  # rebuilt at the restored step, as resume.py does for AdamW
        old = config.scheduler
        config.scheduler = type(old)(optimizer, old.lr_lambdas, last_epoch=old.last_epoch - 1)
