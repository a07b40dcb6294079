"""The LightningModule: nanoGPT's training recipe (loss, AdamW with decay groups, warmup + cosine LR).

Everything else (precision, accumulation, clipping, checkpoints, logging, DDP/FSDP) is the Trainer's job.
The constructor's arguments are the `--model.*` options of the CLI, and are saved in every checkpoint, so a
checkpoint alone rebuilds the model (and its tokenizer, for `generate`).
"""

from __future__ import annotations

import inspect
import math
import warnings
from typing import Literal, Optional, Union

import lightning as L
import torch
from lightning.pytorch.utilities import rank_zero_info
from torchmetrics import MeanMetric

from gpt_lightning.model import GPT, GPTConfig
from gpt_lightning.throughput import enable_tf32


def lr_at(step: int, learning_rate: float, warmup_steps: int, lr_decay_steps: int, min_lr: float) -> float:
    """nanoGPT's schedule: linear warmup to learning_rate, cosine decay to min_lr at lr_decay_steps, then flat.
    `step` counts optimizer steps from 0; the first step already has a non-zero LR."""
    if step < warmup_steps:
        return learning_rate * (step + 1) / (warmup_steps + 1)
    if step > lr_decay_steps or lr_decay_steps <= warmup_steps:
        return min_lr
    decay_ratio = (step - warmup_steps) / (lr_decay_steps - warmup_steps)
    coeff = 0.5 * (1.0 + math.cos(math.pi * decay_ratio))  # 1 -> 0
    return min_lr + coeff * (learning_rate - min_lr)


class GPTLightningModule(L.LightningModule):
    def __init__(
        self,
        vocab_size: int = 50304,
        block_size: int = 1024,
        n_layer: int = 12,
        n_head: int = 12,
        n_embd: int = 768,
        dropout: float = 0.0,
        bias: bool = True,
        learning_rate: float = 6e-4,
        min_lr: float = 6e-5,
        warmup_steps: int = 2000,
        lr_decay_steps: int = 600000,
        decay_lr: bool = True,
        weight_decay: float = 0.1,
        beta1: float = 0.9,
        beta2: float = 0.95,
        compile: Union[bool, Literal["auto"]] = "auto",
        tokenizer: Optional[dict] = None,
    ) -> None:
        """A GPT and how to train it.

        Args:
            vocab_size: tokens in the vocabulary; linked from the data's meta.json by the CLI.
            block_size: longest context; linked from --data.block_size by the CLI.
            n_layer: transformer blocks.
            n_head: attention heads per block.
            n_embd: width of the residual stream (a multiple of n_head).
            dropout: dropout probability (0 for pretraining, ~0.1-0.2 for small data or finetuning).
            bias: biases in Linear and LayerNorm layers, as GPT-2 has.
            learning_rate: peak learning rate, reached at the end of warmup.
            min_lr: learning rate at and after lr_decay_steps (about learning_rate / 10).
            warmup_steps: optimizer steps of linear warmup.
            lr_decay_steps: optimizer step at which the cosine decay reaches min_lr (usually max_steps).
            decay_lr: False keeps learning_rate constant (no warmup, no decay), as nanoGPT's finetuning.
            weight_decay: AdamW weight decay of the matrices; biases and norm weights never decay.
            beta1: AdamW beta1.
            beta2: AdamW beta2 (0.99 suits small models and few tokens per step).
            compile: torch.compile the GPT; `auto` compiles on CUDA only.
            tokenizer: how token ids decode to text; filled in from the data's meta.json by the CLI.
        """
        super().__init__()
        self.save_hyperparameters()
        config = GPTConfig(
            vocab_size=vocab_size,
            block_size=block_size,
            n_layer=n_layer,
            n_head=n_head,
            n_embd=n_embd,
            dropout=dropout,
            bias=bias,
        )
        self.model = GPT(config)
        self.val_loss = MeanMetric()  # sums and counts, so the mean over DDP ranks is exact

    @property
    def config(self) -> GPTConfig:
        return self.model.config

    def configure_model(self) -> None:
        # Lightning calls this before it moves the module to its device: ask the strategy where it will run
        device = self._trainer.strategy.root_device if self._trainer is not None else self.device
        enable_tf32(device)  # in every process, also those a spawning strategy starts
        if self.hparams.compile is True or (self.hparams.compile == "auto" and device.type == "cuda"):
            self.model.compile()  # in place: state_dict keys stay free of `_orig_mod.`
            self._compile_unchecked = True

    def run_model(self, idx: torch.Tensor, targets: Optional[torch.Tensor] = None):
        """self.model(idx, targets); if the first compiled training call fails (no compiler, unsupported GPU,
        an op the compiler cannot handle), warn once and go on in eager mode."""
        if not getattr(self, "_compile_unchecked", False):
            return self.model(idx, targets)
        try:
            out = self.model(idx, targets)
        except Exception as err:  # torch.compile compiles at the first call: its failures surface here
            self.model._compiled_call_impl = None  # undo nn.Module.compile: back to eager
            self._compile_unchecked = False
            first_line = (str(err).strip().splitlines() or [""])[0][:300]
            warnings.warn(f"torch.compile failed, training continues in eager mode ({type(err).__name__}: {first_line})")
            return self.model(idx, targets)
        self._compile_unchecked = not self.training  # a train-mode call compiles a graph of its own
        return out

    def forward(self, idx: torch.Tensor, targets: Optional[torch.Tensor] = None):
        return self.run_model(idx, targets)

    # ------------------------------------------------------------ steps

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        x, y = batch
        _, loss = self.run_model(x, y)
        # Only on the steps the Trainer writes to its loggers (it writes on step k when (k + 1) is a multiple
        # of log_every_n_steps): each self.log call costs ~1 ms of Python, a third of a small model's step.
        # No prog_bar and no sync_dist: either would force a host sync on every step.
        every = self.trainer.log_every_n_steps
        if every and (self.global_step + 1) % every == 0:
            self.log("train/loss", loss, on_step=True, on_epoch=False)
        return loss

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        x, y = batch
        _, loss = self.run_model(x, y)
        self.val_loss.update(loss)

    def on_validation_epoch_end(self) -> None:
        loss = self.val_loss.compute()  # reduced over ranks
        self.val_loss.reset()
        self.log("val/loss", loss, prog_bar=True)
        self.log("val/perplexity", torch.exp(loss))

    test_step = validation_step
    on_test_epoch_end = on_validation_epoch_end

    # ------------------------------------------------------------ optimizer and schedule

    def configure_optimizers(self):
        hp = self.hparams
        params = [p for p in self.model.parameters() if p.requires_grad]
        # Every matrix (Linear weights, embeddings) decays; biases and LayerNorm weights (1-D) do not.
        decay = [p for p in params if p.dim() >= 2]
        no_decay = [p for p in params if p.dim() < 2]
        groups = [
            {"params": decay, "weight_decay": hp.weight_decay},
            {"params": no_decay, "weight_decay": 0.0},
        ]
        rank_zero_info(
            f"AdamW: {len(decay)} decayed tensors ({sum(p.numel() for p in decay):,} parameters), "
            f"{len(no_decay)} non-decayed tensors ({sum(p.numel() for p in no_decay):,} parameters)"
        )
        fused = self.use_fused_adamw()
        optimizer = torch.optim.AdamW(groups, lr=hp.learning_rate, betas=(hp.beta1, hp.beta2), **fused)
        if not hp.decay_lr:
            return optimizer

        def factor(step: int) -> float:
            return lr_at(step, hp.learning_rate, hp.warmup_steps, hp.lr_decay_steps, hp.min_lr) / hp.learning_rate

        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    def use_fused_adamw(self) -> dict:
        """Fused AdamW on CUDA (one kernel for all parameters), except under 16-mixed, where the GradScaler
        must unscale before clipping and Lightning refuses the combination."""
        if self.device.type != "cuda" or "fused" not in inspect.signature(torch.optim.AdamW).parameters:
            return {}
        if self._trainer is not None and "16-mixed" == str(self._trainer.precision):  # None outside a Trainer
            return {"foreach": True}
        return {"fused": True}

    def configure_gradient_clipping(self, optimizer, gradient_clip_val=None, gradient_clip_algorithm=None) -> None:
        # Lightning 2.6 refuses to clip for an optimizer that handles AMP unscaling itself (fused AdamW), even
        # under bf16 / fp32 where nothing is scaled (#21435). The gradients are true gradients there, so clip
        # them directly; in every other case Lightning's own clipping runs.
        if gradient_clip_val and getattr(optimizer, "_step_supports_amp_scaling", False):
            if gradient_clip_algorithm in (None, "norm"):
                torch.nn.utils.clip_grad_norm_(self.parameters(), gradient_clip_val)
            else:
                torch.nn.utils.clip_grad_value_(self.parameters(), gradient_clip_val)
            return
        self.clip_gradients(optimizer, gradient_clip_val, gradient_clip_algorithm)
