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

from dataclasses import dataclass
from typing import Callable, Literal, Optional

import torch
from lightning.pytorch.utilities import rank_zero_info

from gpt_lightning.errors import UserError

MUON_TORCH = "2.9"  # torch.optim.Muon first shipped in torch 2.9
# Moonshot's scaling ("Muon is Scalable for LLM Training"): Muon's update gets AdamW's RMS, so AdamW-like
# learning rates and weight decays apply to it.
MUON_ADJUST_LR = "match_rms_adamw"


@dataclass(frozen=True)
class OptimizerSettings:
    """Which optimizer, and its settings. Checked when built, before the Trainer starts or writes anything.

    Attributes:
        optimizer: `adamw` (nanoGPT's recipe) or `muon`: torch.optim.Muon (torch >= 2.9) on the 2-D weights inside
            the transformer blocks, AdamW (learning_rate, betas, weight_decay) on the embeddings, lm_head and all
            1-D parameters; one schedule scales both. Single device or DDP. See docs/optimizers.md.
        learning_rate: peak learning rate, reached at the end of warmup.
        weight_decay: AdamW weight decay of the matrices; biases and norm weights never decay.
        beta1: AdamW beta1.
        beta2: AdamW beta2 (0.99 suits small models and few tokens per step).
        muon_lr: Muon's peak learning rate (unset: learning_rate). Its updates are scaled to AdamW's RMS
            (adjust_lr_fn `match_rms_adamw`), so it is on AdamW's scale; small char models did best at several
            times learning_rate (docs/optimizers.md). The schedule scales it in proportion.
        muon_momentum: Muon's (Nesterov) momentum, in [0, 1).
        muon_weight_decay: Muon's decoupled weight decay of the block matrices.
    """

    optimizer: Literal["adamw", "muon"] = "adamw"
    learning_rate: float = 6e-4
    weight_decay: float = 0.1
    beta1: float = 0.9
    beta2: float = 0.95
    muon_lr: Optional[float] = None
    muon_momentum: float = 0.95
    muon_weight_decay: float = 0.1

    def __post_init__(self) -> None:
        if self.optimizer not in ("adamw", "muon"):
            raise UserError(f"--model.optimizer must be adamw or muon, got {self.optimizer!r}.")
        for name in ("learning_rate", "muon_lr", "weight_decay", "muon_weight_decay"):  # 0 freezes, as torch allows
            value = getattr(self, name)
            if value is not None and not value >= 0:
                raise UserError(f"--model.{name} must be >= 0, got {value}.")
        for name in ("beta1", "beta2", "muon_momentum"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise UserError(f"--model.{name} must be in [0, 1), got {getattr(self, name)}.")
        if self.optimizer == "muon":
            check_muon_available()

    @property
    def peak_muon_lr(self) -> float:
        """Muon's peak learning rate: muon_lr, or learning_rate when unset."""
        return self.learning_rate if self.muon_lr is None else self.muon_lr

    def group_settings(self) -> list[dict]:
        """What each param group takes from these settings, in the groups' order: AdamW's decayed matrices,
        AdamW's 1-D tensors, then (muon) Muon's block matrices. Building and resuming both use this list."""
        betas = (self.beta1, self.beta2)
        groups = [
            {"lr": self.learning_rate, "betas": betas, "weight_decay": self.weight_decay},
            {"lr": self.learning_rate, "betas": betas, "weight_decay": 0.0},
        ]
        if self.optimizer == "muon":
            groups.append(
                {"lr": self.peak_muon_lr, "momentum": self.muon_momentum, "weight_decay": self.muon_weight_decay}
            )
        return groups


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


def is_hidden_matrix(name: str, p: torch.Tensor) -> bool:
    """Muon's share: a 2-D weight inside a transformer block (`transformer.h.N.*`: attention and MLP matrices)."""
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


# ------------------------------------------------------------ building, and the settings given now on resume


def build_optimizer(
    model: torch.nn.Module, settings: OptimizerSettings, matrix_ids: set[int], adamw_kwargs: dict
) -> torch.optim.Optimizer:
    """nanoGPT's decay groups (every matrix decays; biases and norm weights, 1-D, do not) on AdamW, or with
    `muon` the block matrices on Muon and the rest on that AdamW. matrix_ids: the ids of the matrices, noted
    before FSDP flattens them. The split is printed once."""
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    hidden = [p for n, p in named if settings.optimizer == "muon" and is_hidden_matrix(n, p)]
    hidden_ids = {id(p) for p in hidden}
    rest = [p for _, p in named if id(p) not in hidden_ids]
    decay, no_decay = [p for p in rest if id(p) in matrix_ids], [p for p in rest if id(p) not in matrix_ids]
    adamw_group, rest_group, *muon_group = settings.group_settings()
    groups = [{"params": decay, **adamw_group}, {"params": no_decay, **rest_group}]
    adamw = torch.optim.AdamW(groups, **adamw_kwargs)
    if settings.optimizer == "adamw":
        rank_zero_info(f"AdamW: {describe('decayed', decay)}, {describe('non-decayed', no_decay)}")
        return adamw
    rank_zero_info(
        f"Muon: {describe('hidden-matrix', hidden)} | AdamW: {describe('decayed', decay)} "
        f"(embeddings, lm_head), {describe('non-decayed', no_decay)}"
    )
    muon = torch.optim.Muon(hidden, adjust_lr_fn=MUON_ADJUST_LR, **muon_group[0])
    return MuonWithAdamW(adamw, muon)


def use_settings_given_now(trainer, settings: OptimizerSettings, schedule) -> None:
    """On resume Lightning restores the optimizer and scheduler states of the run that wrote the checkpoint,
    learning rates, betas, momentum and weight decays included; the values given now (a finetune's new learning
    rate) win. On a fresh run this changes nothing. The LR scheduler is rebuilt at the restored step, so that
    its base LRs, the groups' LR and get_last_lr() all follow the new peaks."""
    optimizer = trainer.optimizers[0]
    wanted = settings.group_settings()
    if len(wanted) != len(optimizer.param_groups):
        have = "Muon and AdamW" if len(optimizer.param_groups) == 3 else "AdamW"
        raise UserError(
            f"The checkpoint's optimizer state is {have}'s, but --model.optimizer is {settings.optimizer}; resume "
            f"with the optimizer it was trained with, or start a new run from its weights with --model.init_from."
        )
    for group, values in zip(optimizer.param_groups, wanted):
        group.update(values, initial_lr=values["lr"])
    for config in trainer.lr_scheduler_configs:
        config.scheduler = schedule.scheduler(
            optimizer, settings.learning_rate, last_epoch=config.scheduler.last_epoch - 1
        )
