"""The LightningModule: nanoGPT's training recipe (loss, AdamW with decay groups, warmup + cosine LR).

Everything else (precision, accumulation, clipping, checkpoints, logging, DDP/FSDP) is the Trainer's job.
The constructor's arguments are the `--model.*` options of the CLI, and are saved in every checkpoint, so a
checkpoint alone rebuilds the model (and its tokenizer, for `generate`). The recipe comes first; below it, each
hook that works around something (compiling, TF32, FSDP, exact resume, non-finite losses, clipping) is one
call into the module that owns the workaround.
"""

from __future__ import annotations

import math
from typing import Literal, Optional, Union

import lightning as L
import torch
from lightning.pytorch.utilities import rank_zero_info
from torch.distributed.fsdp import FullyShardedDataParallel as FSDP
from torchmetrics import MeanMetric

from gpt_lightning.data.bytes import bits_per_byte
from gpt_lightning.errors import UserError
from gpt_lightning.hardware import check_precision, enable_tf32
from gpt_lightning.model import GPT, GPTConfig
from gpt_lightning.tokenizer import compact_tokenizer_meta
from gpt_lightning.train import resume
from gpt_lightning.train.clipping import clip_gradients, fused_adamw_options
from gpt_lightning.train.compat import attached_trainer
from gpt_lightning.train.compile import CompiledWithEagerFallback, wants_compile
from gpt_lightning.train.fsdp import matrix_ids
from gpt_lightning.train.nonfinite import NonFinitePolicy, check_validation_loss
from gpt_lightning.train.optimizers import (
    check_muon_available,
    check_muon_options,
    check_strategy_supports_muon,
    muon_with_adamw,
    use_muon_hparams_given_now,
)
from gpt_lightning.weights.state_dict import build_model, strip_wrapper_prefixes


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
        vocab_size: Optional[int] = None,
        pad_vocab_multiple: Optional[int] = None,
        block_size: Optional[int] = None,
        n_layer: Optional[int] = None,
        n_head: Optional[int] = None,
        n_embd: Optional[int] = None,
        dropout: float = 0.0,
        bias: Optional[bool] = None,
        gelu_approximate: Optional[Literal["none", "tanh"]] = None,
        init_from: str = "scratch",
        init_optimizer_state: bool = False,
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
        on_nonfinite_loss: Literal["stop", "skip"] = "stop",
        optimizer: Literal["adamw", "muon"] = "adamw",
        muon_lr: Optional[float] = None,
        muon_momentum: float = 0.95,
        muon_weight_decay: float = 0.1,
    ) -> None:
        """A GPT and how to train it.

        Args:
            vocab_size: tokens in the vocabulary; linked from the data's meta.json by the CLI (None: 50304, or
                the pretrained model's).
            pad_vocab_multiple: give the token table (and lm_head) vocab_size rounded up to a multiple of this
                many rows: GPT-2's 50257 becomes nanoGPT's 50304, whose round matmul dimension runs faster on GPUs
                (nanoGPT reports about 25%). The extra ids are masked (never predicted, sampled or scored, so
                losses are those of the unpadded model), a pretrained 50257-row GPT-2 is padded on import, and
                `export` writes the unpadded model. None: 64 for GPT-2 BPE, 1 otherwise: a character vocabulary
                (65) stays as nanoGPT has it, keeping its parameter counts, and its table is too small for the
                padding to matter.
            block_size: longest context; linked from --data.block_size by the CLI (None: 1024, or the pretrained
                model's; shorter than the pretrained one crops its position table).
            n_layer: transformer blocks (None: 12, or the pretrained model's).
            n_head: attention heads per block (None: 12, or the pretrained model's).
            n_embd: width of the residual stream, a multiple of n_head (None: 768, or the pretrained model's).
            dropout: dropout probability (0 for pretraining, ~0.1-0.2 for small data or finetuning).
            bias: biases in Linear and LayerNorm layers, as GPT-2 has (None: True, or the pretrained model's).
            gelu_approximate: `none` for the exact GELU, `tanh` for GPT-2's approximation (None: `none`, or
                the pretrained model's).
            init_from: `scratch` (random init), `gpt2`, `gpt2-medium`, `gpt2-large`, `gpt2-xl` (OpenAI's weights
                from the Hugging Face hub cache; needs the hf extra), a local Hugging Face GPT-2 folder or a
                .safetensors file, nanoGPT's ckpt.pt (its model_args give the architecture) or a .ckpt written by
                `fit`. The architecture then comes from the weights; setting it differently is an error.
            init_optimizer_state: with nanoGPT's ckpt.pt as init_from, also restore its AdamW state and its step
                (iter_num), so that training, the LR schedule and max_steps continue where nanoGPT stopped
                (set the schedule options to the nanoGPT run's; differences are listed in a warning).
            learning_rate: peak learning rate, reached at the end of warmup.
            min_lr: learning rate at and after lr_decay_steps (about learning_rate / 10).
            warmup_steps: optimizer steps of linear warmup.
            lr_decay_steps: optimizer step at which the cosine decay reaches min_lr (usually max_steps).
            decay_lr: False keeps learning_rate constant (no warmup, no decay), as nanoGPT's finetuning.
            weight_decay: AdamW weight decay of the matrices; biases and norm weights never decay.
            beta1: AdamW beta1.
            beta2: AdamW beta2 (0.99 suits small models and few tokens per step).
            compile: torch.compile the GPT; `auto` compiles on CUDA only. If compiling fails, training warns once
                and runs in eager mode.
            tokenizer: how token ids decode to text; filled in from the data's meta.json by the CLI.
            on_nonfinite_loss: a NaN or infinite training loss `stop`s the run with a message naming the step
                (checked every step on CPU, every log_every_n_steps steps and before each checkpoint elsewhere,
                to avoid a host sync per step), or `skip`s that optimizer step (one host sync per step).
            optimizer: `adamw` (nanoGPT's recipe) or `muon`: torch.optim.Muon (torch >= 2.9) on the 2-D weights
                inside the transformer blocks, AdamW (learning_rate, betas, weight_decay) on the embeddings, the
                tied lm_head and all 1-D parameters; one warmup + cosine schedule scales both. Single device or
                DDP. See docs/optimizers.md.
            muon_lr: Muon's peak learning rate (None: learning_rate). Its updates are scaled to AdamW's RMS
                (adjust_lr_fn `match_rms_adamw`), so it is on AdamW's scale; small char models did best at
                several times learning_rate (docs/optimizers.md). The schedule decays it in proportion (to
                muon_lr x min_lr / learning_rate).
            muon_momentum: Muon's (Nesterov) momentum.
            muon_weight_decay: Muon's decoupled weight decay of the block matrices.
        """
        super().__init__()
        if tokenizer is not None:
            tokenizer = compact_tokenizer_meta(tokenizer)  # saved from here: one line in hparams.yaml and checkpoints
        self.save_hyperparameters()
        if optimizer == "muon":  # before anything is built: one sentence naming what is missing
            check_muon_available()
            check_muon_options(init_optimizer_state)
        architecture = dict(n_layer=n_layer, n_head=n_head, n_embd=n_embd, bias=bias, gelu_approximate=gelu_approximate)
        if init_from == "scratch":
            pad = default_pad_vocab_multiple(tokenizer) if pad_vocab_multiple is None else pad_vocab_multiple
            given = dict(architecture, vocab_size=vocab_size, block_size=block_size, pad_vocab_multiple=pad)
            try:
                config = GPTConfig(dropout=dropout, **{k: v for k, v in given.items() if v is not None})
            except ValueError as e:  # n_embd not a multiple of n_head, a size below 1: the user's settings
                raise UserError(f"Invalid --model settings: {e}") from e
            self.model = GPT(config)
        else:
            self.model = self.pretrained(
                init_from,
                vocab_size,
                block_size,
                dropout,
                tokenizer,
                architecture,
                init_optimizer_state,
                pad_vocab_multiple,
            )
        # Store the resolved architecture, so that a checkpoint alone rebuilds this model: an imported one
        # is then "scratch" with its weights in the checkpoint, and loading it needs neither network nor hub.
        config = self.model.config
        resolved = ("vocab_size", "pad_vocab_multiple", "block_size", *architecture)
        self.hparams.update({k: getattr(config, k) for k in resolved})
        self.hparams.init_from = "scratch"
        self.hparams.init_optimizer_state = False  # applied once, at the start of this run (on_fit_start)
        if self.hparams.tokenizer is not None:
            self.hparams.tokenizer = compact_tokenizer_meta(self.hparams.tokenizer)  # also a pretrained model's
        self.val_loss = MeanMetric()  # sums and counts, so the mean over DDP ranks is exact
        # train/loss is the mean over the logging window, not one micro-batch's (issue 21): updated on the device every
        # step (no NaN check, which would sync the host), computed and reset only on the steps that log
        self.train_loss = MeanMetric(nan_strategy="disable")
        self.last_validation: dict = {}  # the latest validation's metrics, the step-0 one included (train/console.py)
        self.nonfinite = NonFinitePolicy(on_nonfinite_loss)
        self.compiled: Optional[CompiledWithEagerFallback] = None  # set by configure_model
        self.matrix_ids: Optional[set[int]] = None  # set by configure_model

    def forward(self, idx: torch.Tensor, targets: Optional[torch.Tensor] = None):
        """The GPT's forward; compiled when --model.compile says so (and eager if compiling fails)."""
        return (self.compiled or self.model)(idx, targets)

    # ------------------------------------------------------------ nanoGPT's recipe: steps

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        x, y = batch
        _, loss = self(x, y)
        # Only on the steps the Trainer writes to its loggers (it writes on step k when (k + 1) is a multiple
        # of log_every_n_steps): each self.log call is about a millisecond of Python (14% of a tiny model's step
        # in a profile), wasted on the steps in between.
        # No prog_bar and no sync_dist: either would force a host sync on every step.
        self.train_loss.update(loss.detach())
        if self.logs_this_step():
            # Every scalar is logged at the number of optimizer steps done, as checkpoints are named: this batch's
            # step makes it global_step + 1. Logging a `step` key sets the logged step (and leaves out Lightning's
            # `epoch` scalar, always 0 on an endless stream).
            self.log("step", float(self.global_step + 1), on_step=True, on_epoch=False)
            if (batch_idx + 1) % self.trainer.accumulate_grad_batches == 0:  # the step's last micro-batch
                self.log("train/loss", self.train_loss.compute(), on_step=True, on_epoch=False)
                self.train_loss.reset()
                # tokens trained on so far (all ranks, all micro-batches): compares runs with different batch sizes
                accumulated = self.trainer.accumulate_grad_batches * self.trainer.world_size
                self.log("train/tokens", float((self.global_step + 1) * x.numel() * accumulated), on_step=True)
            # the LR this step applies; the decay and no-decay groups share the schedule: one curve
            self.log("train/lr", self.trainer.optimizers[0].param_groups[0]["lr"], on_step=True, on_epoch=False)
        self.nonfinite.update(loss, self.global_step)
        return loss

    def logs_this_step(self) -> bool:
        """Whether the Trainer writes this optimizer step's metrics to its loggers: when the steps done after it
        are a multiple of log_every_n_steps, and at max_steps (where on_train_batch_end stops the run, and a
        stopping Trainer writes its metrics). Logging only then saves a millisecond of Python per self.log call
        (14% of a tiny model's step in a profile) on the steps in between."""
        every, done = self.trainer.log_every_n_steps, self.global_step + 1
        return bool(every) and (done % every == 0 or done == self.trainer.max_steps)

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        x, y = batch
        _, loss = self(x, y)
        self.val_loss.update(loss)

    def on_validation_epoch_end(self) -> None:
        loss = self.val_loss.compute()  # reduced over ranks
        self.val_loss.reset()
        if not self.trainer.sanity_checking:
            check_validation_loss(loss, self.global_step)  # before val/loss is logged and ranks checkpoints
        metrics = {"val/loss": loss, "val/perplexity": torch.exp(loss)}
        tokens_per_byte = getattr(self.trainer.datamodule, "tokens_per_byte", None)
        if tokens_per_byte:  # bits per UTF-8 byte: comparable across tokenizers (data/bytes.py)
            metrics["val/bpb"] = bits_per_byte(loss, tokens_per_byte)
        self.last_validation = metrics
        if self.trainer.sanity_checking:
            # Lightning logs nothing of its sanity check. Run over every batch (num_sanity_val_steps=-1, the CLI's
            # default), it is a full validation of the starting model, outside the training RNG (Lightning
            # isolates it): log it at the starting step, 0 for a new run.
            if self.trainer.num_sanity_val_steps == float("inf"):
                for logger in self.loggers:
                    logger.log_metrics({k: float(v) for k, v in metrics.items()}, step=self.global_step)
            return
        self.log("step", float(self.global_step))  # optimizer steps done, as the checkpoint's name says
        self.log("val/loss", loss, prog_bar=True)
        self.log("val/perplexity", metrics["val/perplexity"])
        if "val/bpb" in metrics:
            self.log("val/bpb", metrics["val/bpb"])

    test_step = validation_step
    on_test_epoch_end = on_validation_epoch_end

    # ------------------------------------------------------------ nanoGPT's recipe: optimizer and schedule

    def configure_optimizers(self):
        hp = self.hparams
        params = [p for p in self.model.parameters() if p.requires_grad]
        # Every matrix (Linear weights, embeddings) decays; biases and LayerNorm weights (1-D) do not.
        matrices = self.matrix_ids or matrix_ids(self.model)
        trainer = attached_trainer(self)
        fused = fused_adamw_options(self.device, str(trainer.precision) if trainer else None)
        if hp.get("optimizer") == "muon":  # Muon on the block matrices, this AdamW on the rest (optimizers.py)
            return self.with_schedule(muon_with_adamw(self.model, hp, matrices, fused))
        decay = [p for p in params if id(p) in matrices]
        no_decay = [p for p in params if id(p) not in matrices]
        groups = [
            {"params": decay, "weight_decay": hp.weight_decay},
            {"params": no_decay, "weight_decay": 0.0},
        ]
        rank_zero_info(
            f"AdamW: {len(decay)} decayed tensors ({sum(p.numel() for p in decay):,} parameters), "
            f"{len(no_decay)} non-decayed tensors ({sum(p.numel() for p in no_decay):,} parameters)"
        )
        optimizer = torch.optim.AdamW(groups, lr=hp.learning_rate, betas=(hp.beta1, hp.beta2), **fused)
        return self.with_schedule(optimizer)

    def with_schedule(self, optimizer: torch.optim.Optimizer):
        """nanoGPT's warmup + cosine LR on every param group: each group's peak LR times the same factor."""
        hp = self.hparams
        if not hp.decay_lr:
            return optimizer

        def factor(step: int) -> float:
            return lr_at(step, hp.learning_rate, hp.warmup_steps, hp.lr_decay_steps, hp.min_lr) / hp.learning_rate

        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    # ------------------------------------------------------------ workarounds, one call each

    def configure_model(self) -> None:
        # Lightning calls this before it moves the module to its device: ask the strategy where it will run
        trainer = attached_trainer(self)
        device = trainer.strategy.root_device if trainer is not None else self.device
        enable_tf32(device)  # in every process, also those a spawning strategy starts
        if trainer is not None:
            check_precision(device, str(trainer.precision))  # bf16 on a GPU without it: one clear error
        self.matrix_ids = matrix_ids(self.model)  # before FSDP flattens the matrices into 1-D shards
        if self.hparams.get("optimizer") == "muon" and trainer is not None:
            check_strategy_supports_muon(trainer.strategy)  # Muon needs whole matrices: before FSDP shards them
        if wants_compile(self.hparams.compile, device):
            self.compiled = CompiledWithEagerFallback(self.model)

    def on_fit_start(self) -> None:
        if getattr(self, "nanogpt_run", None) is not None:
            continue_nanogpt_run(self, self.nanogpt_run)  # its AdamW state and step (weights/nanogpt.py)
            self.nanogpt_run = None  # the optimizer holds it now

    def on_train_start(self) -> None:
        hp = self.hparams
        if hp.get("optimizer") == "muon":
            use_muon_hparams_given_now(self.trainer, hp)  # the same, with Muon's group
            return
        # the learning rate, betas and weight decay given now win over those restored from a checkpoint
        resume.use_optimizer_hparams_given_now(
            self.trainer, hp.learning_rate, weight_decays=(hp.weight_decay, 0.0), betas=(hp.beta1, hp.beta2)
        )

    def on_train_batch_start(self, batch, batch_idx: int) -> None:
        if self.hparams.dropout > 0:
            resume.reseed_dropout(self.trainer, batch_idx)  # exact dropout masks, also after a resume

    def on_train_batch_end(self, outputs, batch, batch_idx: int) -> None:
        self.nonfinite.after_batch(self.trainer, batch_idx, self.device)
        trainer = self.trainer
        if (batch_idx + 1) % trainer.accumulate_grad_batches == 0 and self.is_last_step(trainer):
            # Stopping by should_stop makes Lightning validate this step first (once, also when it is a
            # val_every_n_steps step), so every run ends with a val/loss and the best checkpoint has its monitor.
            trainer.should_stop = True

    @staticmethod
    def is_last_step(trainer: L.Trainer) -> bool:
        """max_steps reached, or the last batch of the last epoch of a finite data stream."""
        if 0 < trainer.max_steps <= trainer.global_step:
            return True
        max_epochs = trainer.max_epochs
        return trainer.is_last_batch and max_epochs is not None and 0 < max_epochs <= trainer.current_epoch + 1

    def on_before_optimizer_step(self, optimizer) -> None:
        if self.logs_this_step():
            self.log("train/grad_norm", self.gradient_norm(), on_step=True, on_epoch=False)
        self.nonfinite.before_optimizer_step(self.trainer, optimizer)

    def configure_gradient_clipping(self, optimizer, gradient_clip_val=None, gradient_clip_algorithm=None) -> None:
        clip_gradients(self, optimizer, gradient_clip_val, gradient_clip_algorithm)

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        self.nonfinite.before_save(self.parameters(), self.global_step)

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        # Our checkpoints never carry torch.compile / DDP wrapper prefixes, but older files may (`_orig_mod.`
        # from torch.compile(model), `module.` from a DDP-wrapped save): strip them before the state is loaded.
        checkpoint["state_dict"] = strip_wrapper_prefixes(checkpoint["state_dict"])

    # ------------------------------------------------------------ helpers

    def gradient_norm(self) -> torch.Tensor:
        """The global L2 norm of the gradients, before clipping (Lightning calls on_before_optimizer_step after
        unscaling and before clipping). Under FSDP each rank holds a shard: the squares are summed over ranks."""
        grads = [p.grad for p in self.parameters() if p.grad is not None]
        # (torch.nn.utils.get_total_norm does this from torch 2.6 on; setup.cfg allows torch >= 2.3)
        norms = [torch.linalg.vector_norm(g) for g in grads]
        norm = torch.linalg.vector_norm(torch.stack(norms)) if norms else torch.zeros((), device=self.device)
        if isinstance(self.trainer.model, FSDP):
            norm = self.trainer.strategy.reduce(norm.square(), reduce_op="sum").sqrt()
        return norm

    @property
    def config(self) -> GPTConfig:
        return self.model.config

    def pretrained(
        self, init_from, vocab_size, block_size, dropout, tokenizer, architecture, continue_run, pad_vocab_multiple
    ) -> GPT:
        """GPT-2 weights (see hf.py) or a checkpoint's (nanoGPT's ckpt.pt, see nanogpt.py), fitted to this run:
        block_size crops, a conflicting setting is an error. With continue_run, nanoGPT's step and AdamW state
        are kept for on_fit_start."""
        from gpt_lightning.weights.hf import adapt_pretrained
        from gpt_lightning.weights.load import load_init_weights

        config, sd, model_tokenizer, self.nanogpt_run = load_init_weights(init_from, continue_run)
        if pad_vocab_multiple is None:
            pad_vocab_multiple = default_pad_vocab_multiple(tokenizer or model_tokenizer)
        config, sd, model_tokenizer = adapt_pretrained(
            config,
            sd,
            model_tokenizer,
            source=init_from,
            vocab_size=vocab_size,
            block_size=block_size,
            dropout=dropout,
            data_tokenizer=tokenizer,
            pad_vocab_multiple=pad_vocab_multiple,
            **architecture,
        )
        self.hparams.tokenizer = model_tokenizer  # GPT-2's BPE when the data did not say
        model = build_model(config, sd, source=init_from)
        rank_zero_info(f"Initialized from {init_from}: {model.get_num_params() / 1e6:.2f}M parameters, {config}")
        return model


def default_pad_vocab_multiple(tokenizer: Optional[dict]) -> int:
    """--model.pad_vocab_multiple when unset: 64 for GPT-2's BPE (nanoGPT's 50304), 1 for anything else."""
    return 64 if (tokenizer or {}).get("kind") == "gpt2" else 1


def continue_nanogpt_run(module: GPTLightningModule, run) -> None:
    """Carry on from nanoGPT's checkpoint: its AdamW state onto the same parameters (by name), and its step.

    nanoGPT's iter_num counts the optimizer steps taken, and the next step's LR is get_lr(iter_num), which is
    lr_at(global_step) here. So the step becomes Lightning's global_step (its optimizer-step counter, as a
    checkpoint resume restores it), the scheduler's count and the data stream's position: LR schedule,
    max_steps, checkpoint names and a later --ckpt_path resume all continue from there. Runs before
    Lightning builds the dataloaders and before on_train_start, which sets each group's LR from the
    scheduler's count."""
    from lightning.pytorch.strategies import FSDPStrategy
    from lightning.pytorch.utilities import rank_zero_warn

    from gpt_lightning.errors import UserError
    from gpt_lightning.train.compat import set_global_step
    from gpt_lightning.weights.nanogpt import load_optimizer_state_by_name, schedule_differences

    trainer = module.trainer
    if isinstance(trainer.strategy, FSDPStrategy):
        raise UserError(
            "--model.init_optimizer_state is not supported under FSDP (its parameters are flat shards); "
            "continue the nanoGPT run on one device or with DDP."
        )
    names = {id(p): n for n, p in module.model.named_parameters()}
    names[id(module.model.lm_head.weight)] = "transformer.wte.weight"  # nanoGPT's name of the tied tensor
    load_optimizer_state_by_name(trainer.optimizers[0], names, run.optimizer_state)
    step = run.iter_num
    if 0 <= trainer.max_steps <= step:
        raise UserError(
            f"The nanoGPT run is at step {step}, at or past --trainer.max_steps {trainer.max_steps}, so there is "
            f"nothing to continue; raise --trainer.max_steps above {step}."
        )
    set_global_step(trainer, step)
    if trainer.lr_scheduler_configs:
        trainer.lr_scheduler_configs[0].scheduler.last_epoch = step
    datamodule = trainer.datamodule
    if datamodule is not None and hasattr(datamodule, "batches_consumed"):
        # where DataModule.state_dict says a run at this step stands, so a resumed run draws the same batches
        datamodule.batches_consumed = step * trainer.accumulate_grad_batches
    differences = schedule_differences(run.config, dict(module.hparams))
    rank_zero_info(f"Continuing the nanoGPT run at step {step} (its AdamW state restored).")
    if differences:
        rank_zero_warn(
            "The LR schedule does not continue nanoGPT's exactly: "
            + ", ".join(differences)
            + "; set these options to nanoGPT's values to continue its schedule."
        )
