"""Callbacks for what the Trainer has no switch for."""

from __future__ import annotations

import dataclasses
from typing import Optional

import lightning as L
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.strategies import FSDPStrategy
from lightning.pytorch.utilities import rank_zero_info, rank_zero_only

from gpt_lightning.train.resume import StopRequest, TrainingInterrupted
from gpt_lightning.tokenizer import tokenizer_from_meta


class LastCheckpoint(ModelCheckpoint):
    """Keeps `last.ckpt` current: every `every_n_train_steps` optimizer steps, when training ends (also when
    max_steps is not a multiple of the interval, which ModelCheckpoint alone skips), and when SIGINT (Ctrl-C) or
    SIGTERM asks the run to stop: then at the end of the current optimizer step, after which the run exits with
    status 128 + signal number. Other exceptions save nothing (the state may be mid-step, and a crash must not
    replace a good last.ckpt). It ranks nothing; the `checkpoint` callback keeps the best model by val/loss."""

    def __init__(self, dirpath: Optional[str] = None, every_n_train_steps: int = 250) -> None:
        """Args:
        dirpath: folder for last.ckpt (linked to --checkpoint.dirpath by the CLI).
        every_n_train_steps: optimizer steps between two saves of last.ckpt; at most this much work is lost
            when a run is killed without warning.
        """
        super().__init__(
            dirpath=dirpath,
            save_top_k=0,
            save_last=True,
            every_n_train_steps=every_n_train_steps,
            enable_version_counter=False,
        )
        self.stop_request = StopRequest()

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        super().on_train_start(trainer, pl_module)
        self.stop_request.install()

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs, batch, batch_idx) -> None:
        super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)
        if (batch_idx + 1) % trainer.accumulate_grad_batches:
            return  # mid-accumulation: a stop waits for the optimizer step
        signum = self.stop_request.requested(trainer)
        if signum is None:
            return
        if self._last_global_step_saved != trainer.global_step:
            self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))
            self._last_global_step_saved = trainer.global_step
        rank_zero_info(
            f"Stopped after step {trainer.global_step}; saved {self.last_model_path}. "
            "Resume with the same command plus --ckpt_path last."
        )
        for lg in trainer.loggers:  # Lightning does not flush loggers when a run ends by an exception
            lg.finalize("interrupted")
        raise TrainingInterrupted(signum)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.stop_request.restore()
        if self._last_global_step_saved != trainer.global_step and not trainer.fast_dev_run:
            self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))
            self._last_global_step_saved = trainer.global_step

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        self.stop_request.restore()


class TextSampleCallback(L.Callback):
    """Writes a short generated text to TensorBoard after each validation, to read along with the loss."""

    def __init__(
        self, prompt: str = "\n", max_new_tokens: int = 200, temperature: float = 0.8, top_k: Optional[int] = 200
    ) -> None:
        """Args:
        prompt: text the sample continues (must be inside a char model's vocabulary).
        max_new_tokens: tokens to generate (0 turns the sample off).
        temperature: sampling temperature (0: greedy).
        top_k: sample among the k most likely tokens only.
        """
        from gpt_lightning.generation import Sampling  # checks the settings now, not at the first validation

        self.prompt, self.max_new_tokens = prompt, max_new_tokens
        self.sampling = Sampling(temperature=temperature, top_k=top_k)

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if isinstance(trainer.strategy, FSDPStrategy) and self.max_new_tokens > 0:
            # Under FSDP every forward needs all ranks, and the sample runs on rank 0 alone: it would hang.
            rank_zero_info("Text samples are off under FSDP (generation runs on rank 0 alone).")
            self.max_new_tokens = 0
        # a prompt the tokenizer cannot encode should stop the run now, not at the first validation
        meta = pl_module.hparams.get("tokenizer")
        if meta and self.max_new_tokens > 0:
            from gpt_lightning.generation import encode_prompt

            encode_prompt(tokenizer_from_meta(meta), self.prompt)

    @rank_zero_only
    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        meta = pl_module.hparams.get("tokenizer")
        loggers = [lg for lg in trainer.loggers if isinstance(lg, TensorBoardLogger)]
        if trainer.sanity_checking or not meta or not loggers or self.max_new_tokens < 1:
            return
        from gpt_lightning.generation import generate_text  # the same code path as `generate`

        tokenizer = tokenizer_from_meta(meta)
        sampling = dataclasses.replace(self.sampling, seed=trainer.global_step)  # a new draw at each step
        was_training = pl_module.training
        pl_module.eval()
        text = generate_text(pl_module.model, tokenizer, self.prompt, self.max_new_tokens, sampling=sampling)
        pl_module.train(was_training)
        for lg in loggers:
            # TensorBoard renders text as markdown: indent by 4 spaces to keep line breaks and spacing
            lg.experiment.add_text("samples", "    " + text.replace("\n", "\n    "), trainer.global_step)
