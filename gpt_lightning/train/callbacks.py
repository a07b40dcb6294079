"""Callbacks for what the Trainer has no switch for."""

from __future__ import annotations

import dataclasses
import os
from typing import Optional

import lightning as L
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.strategies import FSDPStrategy
from lightning.pytorch.utilities import rank_zero_info, rank_zero_only

from gpt_lightning.tokenizer import tokenizer_from_meta
from gpt_lightning.train.safety import StopRequest, TrainingInterrupted


class LastCheckpoint(L.Callback):
    """Keeps `last.ckpt` current: every `every_n_train_steps` optimizer steps, when training ends (also when
    max_steps is not a multiple of the interval, which ModelCheckpoint alone skips), and when SIGINT (Ctrl-C) or
    SIGTERM asks the run to stop: then at the end of the current optimizer step, after which the run validates that
    step (a final val/loss) and exits with status 128 + signal number. Other exceptions save nothing (the state may
    be mid-step, and a crash must not replace a good last.ckpt). It ranks nothing; the `checkpoint` callback keeps
    the best model by val/loss.

    Saves go through the public `Trainer.save_checkpoint`, so the Trainer's CheckpointIO writes them (atomically,
    see resume.py) and the strategy decides which ranks write: every rank calls it, as FSDP needs."""

    def __init__(self, dirpath: Optional[str] = None, every_n_train_steps: int = 250) -> None:
        """last.ckpt, kept current.

        Args:
            dirpath: folder for last.ckpt (linked to --checkpoint.dirpath by the CLI; None: the folder of the
                Trainer's ModelCheckpoint, else DEFAULT_ROOT_DIR/checkpoints).
            every_n_train_steps: optimizer steps between two saves of last.ckpt (0: only at the end and on a stop);
                at most this much work is lost when a run is killed without warning.
        """
        self.dirpath, self.every_n_train_steps = dirpath, every_n_train_steps
        self.last_model_path = ""
        self.saved_step: Optional[int] = None  # global_step of the state last.ckpt holds
        self.stop_request = StopRequest()
        self.stopping: Optional[int] = None

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # The state at the start is the checkpoint this run resumed from, or step 0: nothing new to save.
        self.saved_step = trainer.global_step
        self.stopping: Optional[int] = None  # the signal that asked this run to stop
        self.stop_request.install()

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs, batch, batch_idx) -> None:
        if (batch_idx + 1) % trainer.accumulate_grad_batches:
            return  # mid-accumulation: saves and stops wait for the optimizer step
        every = self.every_n_train_steps
        if every > 0 and trainer.global_step % every == 0:
            self.save(trainer)
        self.stop_if_requested(trainer, validate_first=True)

    def on_validation_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch, batch_idx, *args):
        # A stop asked for during validation (in fit) need not wait for the rest of it: the training state is at an
        # optimizer-step boundary all through validation, so last.ckpt can be saved now; on resume Lightning skips
        # the rest of this validation and trains on. One process only: ranks may hold different numbers of
        # validation batches, so a per-batch agreement between ranks could wait forever; with several, the stop
        # waits for the end of validation.
        if trainer.state.fn == "fit" and not trainer.sanity_checking and trainer.world_size == 1:
            self.stop_if_requested(trainer)

    def stop_if_requested(self, trainer: L.Trainer, validate_first: bool = False) -> None:
        """If SIGINT or SIGTERM came (on any rank): save last.ckpt and exit with status 128 + signal number; at a
        step boundary (validate_first), only after Lightning has validated that step (a final val/loss)."""
        if self.stopping is not None:
            return  # stopping already: this is the final validation
        signum = self.stop_request.requested(trainer)
        if signum is None:
            return
        self.save(trainer)  # first: the validation that may follow must not put the saved state at risk
        rank_zero_info(
            f"Stopped after step {trainer.global_step}; saved {self.last_model_path}. "
            "Resume with the same command plus --ckpt_path last."
        )
        if validate_first:
            self.stopping = signum
            trainer.should_stop = True  # Lightning validates this step, then ends training (on_train_end exits)
            return
        self.exit(trainer, signum)

    def exit(self, trainer: L.Trainer, signum: int) -> None:
        for lg in trainer.loggers:  # Lightning does not flush loggers when a run ends by an exception
            lg.finalize("interrupted")
        raise TrainingInterrupted(signum)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.stop_request.restore()
        if not trainer.fast_dev_run:
            self.save(trainer)
        if self.stopping is not None:
            self.exit(trainer, self.stopping)

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        self.stop_request.restore()

    def save(self, trainer: L.Trainer) -> None:
        """Write DIRPATH/last.ckpt, unless it already holds this optimizer step (all ranks call this)."""
        if self.saved_step == trainer.global_step:
            return
        if not self.last_model_path:
            self.last_model_path = os.path.join(self.resolve_dirpath(trainer), "last.ckpt")
        trainer.save_checkpoint(self.last_model_path, weights_only=False)  # all of it, to resume from
        self.saved_step = trainer.global_step

    def resolve_dirpath(self, trainer: L.Trainer) -> str:
        if self.dirpath is not None:
            return str(self.dirpath)
        if trainer.checkpoint_callback is not None and getattr(trainer.checkpoint_callback, "dirpath", None):
            return str(trainer.checkpoint_callback.dirpath)  # resolved and broadcast by ModelCheckpoint.setup
        return trainer.strategy.broadcast(os.path.join(trainer.default_root_dir, "checkpoints"))


class TextSampleCallback(L.Callback):
    """Writes a short generated text to TensorBoard after each validation, to read along with the loss."""

    def __init__(
        self, prompt: str = "\n", max_new_tokens: int = 200, temperature: float = 0.8, top_k: Optional[int] = 200
    ) -> None:
        """A text sample in TensorBoard's TEXT tab after each validation.

        Args:
            prompt: text the sample continues (must be inside a char model's vocabulary).
            max_new_tokens: tokens to generate (0 turns the sample off).
            temperature: sampling temperature (0: greedy).
            top_k: sample among the k most likely tokens only (None: all).
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
        from gpt_lightning.generation import (
            generate_text,  # the same code path as `generate`
        )

        tokenizer = tokenizer_from_meta(meta)
        sampling = dataclasses.replace(self.sampling, seed=trainer.global_step)  # a new draw at each step
        was_training = pl_module.training
        pl_module.eval()
        text = generate_text(pl_module.model, tokenizer, self.prompt, self.max_new_tokens, sampling=sampling)
        pl_module.train(was_training)
        step = trainer.global_step  # optimizer steps done: the step of this validation's val/loss
        for lg in loggers:
            lg.experiment.add_text("samples", sample_markdown(text, step, trainer.callback_metrics, self), step)


def sample_markdown(text: str, step: int, metrics: dict, sample: TextSampleCallback) -> str:
    """A header line saying what the sample is (step, val/loss, sampling settings), then the text. TensorBoard
    renders text as markdown: the text is indented by 4 spaces, a code block, to keep its line breaks and spacing."""
    loss = metrics.get("val/loss")
    header = [f"step {step}", f"val/loss {float(loss):.4f}" if loss is not None else "val/loss unknown"]
    header += [f"prompt {sample.prompt!r}", f"temperature {sample.sampling.temperature:g}"]
    header += [f"top_k {sample.sampling.top_k}", f"{sample.max_new_tokens} new tokens"]
    return "**" + " · ".join(header) + "**\n\n" + "    " + text.replace("\n", "\n    ")
