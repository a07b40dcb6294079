"""The LightningModule: nanoGPT's training recipe (loss, AdamW with decay groups, warmup + cosine LR).

Everything else (precision, accumulation, clipping, checkpoints, logging, DDP/FSDP) is the Trainer's job. The
`--model.*` options are this class's constructor arguments plus the fields of three settings dataclasses, which
`options_from` adds to it: GPTConfig (model.py, the architecture), OptimizerSettings (optimizers.py) and
ScheduleSettings (schedules.py). All are saved in every checkpoint, so a checkpoint alone rebuilds the model
(and its tokenizer, for `generate`). The recipe comes first; below the constructor, each hook that works
around something (compiling, TF32, FSDP, exact resume, non-finite losses, clipping) is one call into the
module that owns the workaround.
"""

from __future__ import annotations

import inspect
from dataclasses import asdict
from typing import Literal, Optional, Union

import lightning as L
import torch
from lightning.pytorch.utilities import rank_zero_info
from torch.distributed.fsdp import FullyShardedDataParallel as FSDP
from torchmetrics import MeanMetric, MetricCollection

from gpt_lightning.data.bytes import bits_per_byte
from gpt_lightning.hardware import check_precision, enable_tf32
from gpt_lightning.model import GPTConfig
from gpt_lightning.train import resume
from gpt_lightning.train.clipping import clip_gradients, fused_adamw_options
from gpt_lightning.train.compat import attached_trainer
from gpt_lightning.train.compile import CompiledWithEagerFallback, wants_compile
from gpt_lightning.train.fsdp import matrix_ids
from gpt_lightning.train.nanogpt_run import continue_nanogpt_run
from gpt_lightning.train.nonfinite import NonFinitePolicy, check_validation_loss
from gpt_lightning.train.optimizers import (
    OptimizerSettings,
    build_optimizer,
    check_muon_options,
    check_strategy_supports_muon,
    use_settings_given_now,
)
from gpt_lightning.train.options import options_from, pick
from gpt_lightning.train.schedules import ScheduleSettings
from gpt_lightning.weights.load import model_for_run
from gpt_lightning.weights.state_dict import strip_wrapper_prefixes


@options_from(GPTConfig, OptimizerSettings, ScheduleSettings, unset_is_none=(GPTConfig,))
class GPTLightningModule(L.LightningModule):
    # ------------------------------------------------------------ nanoGPT's recipe: steps

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        x, y = batch
        _, loss = self(x, y)
        # Only on the steps the Trainer writes to its loggers: each self.log call is about a millisecond of Python
        # (14% of a tiny model's step in a profile). No prog_bar and no sync_dist: either forces a host sync per step.
        self.train_loss.update(loss.detach())  # the mean over the logging window: no host sync until it is logged
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
            # the LR this step applies; every group follows one schedule: one curve
            self.log("train/lr", self.trainer.optimizers[0].param_groups[0]["lr"], on_step=True, on_epoch=False)
        self.nonfinite.update(loss, self.global_step)
        return loss

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        x, y = batch
        logits, loss = self(x, y)
        # each metric takes what its update() names: value (the batch's mean loss), preds (N, vocab), target (N)
        self.val_metrics.update(value=loss, preds=logits.flatten(0, 1), target=y.flatten())

    def on_validation_epoch_end(self) -> None:
        metrics = self.val_metrics.compute()  # reduced over ranks: sums and counts, so exact
        self.val_metrics.reset()
        loss = metrics["val/loss"]
        if not self.trainer.sanity_checking:
            check_validation_loss(loss, self.global_step)  # before val/loss is logged and ranks checkpoints
        metrics["val/perplexity"] = torch.exp(loss)
        tokens_per_byte = getattr(self.trainer.datamodule, "tokens_per_byte", None)
        if tokens_per_byte:  # bits per UTF-8 byte: comparable across tokenizers (data/bytes.py)
            metrics["val/bpb"] = bits_per_byte(loss, tokens_per_byte)
        self.last_validation = dict(metrics)  # the latest validation's, step 0 included (train/console.py)
        if self.trainer.sanity_checking:
            # Lightning logs nothing of its sanity check. Run over every batch (num_sanity_val_steps=-1, the CLI's
            # default), it is a full validation of the starting model, outside the training RNG (Lightning
            # isolates it): log it at the starting step, 0 for a new run.
            if self.trainer.num_sanity_val_steps == float("inf"):
                for logger in self.loggers:
                    logger.log_metrics({k: float(v) for k, v in metrics.items()}, step=self.global_step)
            return
        self.log("step", float(self.global_step))  # optimizer steps done, as the checkpoint's name says
        self.log("val/loss", metrics.pop("val/loss"), prog_bar=True)
        self.log_dict(metrics)

    test_step = validation_step
    on_test_epoch_end = on_validation_epoch_end

    # ------------------------------------------------------------ nanoGPT's recipe: optimizer and schedule

    def configure_optimizers(self):
        trainer = attached_trainer(self)
        fused = fused_adamw_options(self.device, str(trainer.precision) if trainer else None)
        matrices = self.matrix_ids or matrix_ids(self.model)  # noted before FSDP flattens them
        optimizer = build_optimizer(self.model, self.optimizer_settings, matrices, fused)
        scheduler = self.schedule.scheduler(optimizer, self.optimizer_settings.learning_rate)
        if scheduler is None:  # constant
            return optimizer
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    @property
    def optimizer_settings(self) -> OptimizerSettings:
        return OptimizerSettings(**pick(OptimizerSettings, self.hparams))

    @property
    def schedule(self) -> ScheduleSettings:
        return ScheduleSettings(**pick(ScheduleSettings, self.hparams))

    # ------------------------------------------------------------ the constructor

    def __init__(
        self,
        init_from: str = "scratch",
        init_optimizer_state: bool = False,
        compile: Union[bool, Literal["auto"]] = "auto",
        tokenizer: Optional[dict] = None,
        on_nonfinite_loss: Literal["stop", "skip"] = "stop",
        **options,
    ) -> None:
        """A GPT and how to train it.

        Args:
            init_from: `scratch` (random init), `gpt2`, `gpt2-medium`, `gpt2-large`, `gpt2-xl` (OpenAI's weights
                from the Hugging Face hub cache; needs the hf extra), a local Hugging Face GPT-2 folder or a
                .safetensors file, nanoGPT's ckpt.pt (its model_args give the architecture) or a .ckpt written by
                `fit`. The architecture then comes from the weights; setting it differently is an error.
            init_optimizer_state: with nanoGPT's ckpt.pt as init_from, also restore its AdamW state and its step
                (iter_num), so that training, the LR schedule and max_steps continue where nanoGPT stopped
                (set the schedule options to the nanoGPT run's; differences are listed in a warning).
            compile: torch.compile the GPT; `auto` compiles on CUDA only. If compiling fails, training warns once
                and runs in eager mode.
            tokenizer: how token ids decode to text; filled in from the data's meta.json by the CLI.
            on_nonfinite_loss: a NaN or infinite training loss `stop`s the run with a message naming the step
                (checked every step on CPU, every log_every_n_steps steps and before each checkpoint elsewhere,
                to avoid a host sync per step), or `skip`s that optimizer step (one host sync per step).
        """
        super().__init__()
        self.save_hyperparameters(frame=inspect.currentframe().f_back)  # options_from's __init__ holds them all
        optimizer, schedule = OptimizerSettings(**pick(OptimizerSettings, options)), self.schedule  # checked now
        if optimizer.optimizer == "muon":  # before anything is built: one sentence naming what is wrong
            check_muon_options(init_optimizer_state)
        self.model, tokenizer, self.nanogpt_run = model_for_run(
            pick(GPTConfig, options), init_from, tokenizer, init_optimizer_state
        )
        if init_from != "scratch":
            rank_zero_info(f"Initialized from {init_from}: {self.model.get_num_params() / 1e6:.2f}M parameters")
        # Store what was resolved, so that a checkpoint alone rebuilds this model: an imported one is then
        # "scratch" with its weights in the checkpoint, and loading it needs neither network nor hub.
        self.hparams.update(asdict(self.model.config), **asdict(optimizer), **asdict(schedule))
        self.hparams.update(init_from="scratch", init_optimizer_state=False, tokenizer=tokenizer)
        # Validation metrics: adding one is one line here (it is logged as val/<name>, reduced over DDP ranks).
        self.val_metrics = MetricCollection({"loss": MeanMetric()}, prefix="val/")
        self.train_loss = MeanMetric(nan_strategy="disable")  # NaN checks would sync: nonfinite.py checks the loss
        self.last_validation: dict = {}
        self.nonfinite = NonFinitePolicy(on_nonfinite_loss)
        self.compiled: Optional[CompiledWithEagerFallback] = None  # set by configure_model
        self.matrix_ids: Optional[set[int]] = None  # set by configure_model

    def forward(self, idx: torch.Tensor, targets: Optional[torch.Tensor] = None):
        """The GPT's forward; compiled when --model.compile says so (and eager if compiling fails)."""
        return (self.compiled or self.model)(idx, targets)

    @property
    def config(self) -> GPTConfig:
        return self.model.config

    # ------------------------------------------------------------ workarounds, one call each

    def configure_model(self) -> None:
        # Lightning calls this before it moves the module to its device: ask the strategy where it will run
        trainer = attached_trainer(self)
        device = trainer.strategy.root_device if trainer is not None else self.device
        enable_tf32(device)  # in every process, also those a spawning strategy starts
        if trainer is not None:
            check_precision(device, str(trainer.precision))  # bf16 on a GPU without it: one clear error
        self.matrix_ids = matrix_ids(self.model)  # before FSDP flattens the matrices into 1-D shards
        if self.optimizer_settings.optimizer == "muon" and trainer is not None:
            check_strategy_supports_muon(trainer.strategy)  # Muon needs whole matrices: before FSDP shards them
        if wants_compile(self.hparams.compile, device):
            self.compiled = CompiledWithEagerFallback(self.model)

    def on_fit_start(self) -> None:
        if self.nanogpt_run is not None:
            continue_nanogpt_run(self, self.nanogpt_run)  # its AdamW state and step (train/nanogpt_run.py)
            self.nanogpt_run = None  # the optimizer holds it now

    def on_train_start(self) -> None:
        # the learning rates, betas, momentum and weight decays given now win over a checkpoint's
        use_settings_given_now(self.trainer, self.optimizer_settings, self.schedule)

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

    def logs_this_step(self) -> bool:
        """Whether the Trainer writes this optimizer step's metrics to its loggers: when the steps done after it
        are a multiple of log_every_n_steps, and at max_steps (where on_train_batch_end stops the run, and a
        stopping Trainer writes its metrics)."""
        every, done = self.trainer.log_every_n_steps, self.global_step + 1
        return bool(every) and (done % every == 0 or done == self.trainer.max_steps)

    @staticmethod
    def is_last_step(trainer: L.Trainer) -> bool:
        """max_steps reached, or the last batch of the last epoch of a finite data stream."""
        if 0 < trainer.max_steps <= trainer.global_step:
            return True
        max_epochs = trainer.max_epochs
        return trainer.is_last_batch and max_epochs is not None and 0 < max_epochs <= trainer.current_epoch + 1

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
