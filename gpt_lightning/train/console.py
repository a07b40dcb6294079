"""What the terminal shows while `fit` runs, in nanoGPT's spirit: a few lines on what is trained and where it goes,
the training loss, LR and tokens/s at every logging step, each validation, and a summary when the run ends.

- GPTProgressBar: Lightning's TQDM bar counting optimizer steps (`step/max_steps`, no `Epoch 0`, no `v_num`), with
  the values ConsoleLog gives it. It switches itself off when stdout is not a terminal (a redirect, a SLURM log).
- ConsoleLog: reads the values at the logging steps (train/loss, the mean over the logging window, and train/lr,
  as the module logged them; tokens/s and MFU from the ThroughputLogger): onto the bar, or without a bar as one
  plain, greppable line per logging step and per validation:
      step 500/2000: loss 1.2345, lr 1.00e-03, 15,300 tokens/s, mfu -
      step 500: val loss 1.2345, val bpb 1.7810
  Only at logging steps: reading a logged value is a host sync, and the steps in between have none.
- RunSummary: what the run did and where its outputs are, with the next two commands, when training ends (also
  after a stop by signal or a non-finite loss).

Both read what other callbacks wrote in the same hook, so they run last (`run_last`, as the CLI orders them).
"""

from __future__ import annotations

import logging
import math
import signal
import sys
import time
from pathlib import Path
from typing import Optional

import lightning as L
from lightning.pytorch.callbacks import ModelCheckpoint, TQDMProgressBar
from lightning.pytorch.callbacks.progress.tqdm_progress import Tqdm, _update_n
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.utilities import rank_zero_only

# TensorBoard's CUSTOM SCALARS (the layout of train/tensorboard.py) with smoothing off: a chart of 4 validations
# smoothed at its default 0.6 ends far from the last value. (`_smoothingWeight` in the address is the dashboard's
# own setting; checked in headless Chromium with TensorBoard 2.21, see docs/monitoring.md.)
TENSORBOARD_URL = "http://localhost:6006/#custom_scalars&_smoothingWeight=0"

# Lightning's start-up lines that say nothing a user of this CLI needs ("GPU available: False, used: False" on
# every CPU run; the device in use is in the tokens-per-step line), and its advertising
# (and "`Trainer.fit` stopped: `max_steps=N` reached.", which the run summary says)
LIGHTNING_NOISE = ("GPU available:", "TPU available:", "HPU available:", "💡 Tip:", "`Trainer.fit` stopped:")


def quiet_lightning_startup() -> None:
    """Filter Lightning's device-availability lines and tips out of its `rank_zero` logger (its warnings stay)."""
    logger = logging.getLogger("lightning.pytorch.utilities.rank_zero")
    if not any(getattr(f, "gpt_lightning", False) for f in logger.filters):
        noise_filter = logging.Filter()
        noise_filter.filter = lambda record: not str(record.msg).startswith(LIGHTNING_NOISE)
        noise_filter.gpt_lightning = True
        logger.addFilter(noise_filter)


def run_last(callbacks: list) -> list:
    """The callbacks with ConsoleLog, RunSummary and the progress bar moved to the end (order kept otherwise): they
    show what the others logged and measured in the same hook. Lightning keeps the order it was given."""
    shows = (ConsoleLog, RunSummary, TQDMProgressBar)
    return [c for c in callbacks if not isinstance(c, shows)] + [c for c in callbacks if isinstance(c, shows)]


def is_logging_step(trainer: L.Trainer, batch_idx: int) -> bool:
    """Whether this batch ended an optimizer step whose metrics the module logged (GPTLightningModule.logs_this_step):
    every log_every_n_steps steps, and the last step."""
    every = trainer.log_every_n_steps
    if not every or (batch_idx + 1) % trainer.accumulate_grad_batches:
        return False
    return trainer.global_step % every == 0 or trainer.global_step == trainer.max_steps


def step_of(trainer: L.Trainer) -> str:
    """`500/2000`, or `500` on a run without max_steps."""
    return f"{trainer.global_step}/{trainer.max_steps}" if trainer.max_steps > 0 else str(trainer.global_step)


def metric(metrics: dict, key: str) -> Optional[float]:
    value = metrics.get(key)
    return None if value is None else float(value)  # a tensor: one host sync


def active_bar(trainer: L.Trainer) -> Optional[GPTProgressBar]:
    bar = trainer.progress_bar_callback
    return bar if isinstance(bar, GPTProgressBar) and bar.is_enabled else None


def say(trainer: L.Trainer, line: str) -> None:
    """Print a line, above the progress bar when one is drawn (never onto it)."""
    bar = trainer.progress_bar_callback
    if bar is not None and bar.is_enabled and bar.drawing():
        bar.print(line)
    else:
        print(line, flush=True)


class GPTProgressBar(TQDMProgressBar):
    """TQDM's bar, counting optimizer steps against max_steps: `train 40%|████ | 800/2000 [00:52<01:18, 15.3
    step/s, loss=1.9876, lr=8.1e-04, tok/s=11,730, val=2.0312]`. Off when stdout is not a terminal."""

    def __init__(self, refresh_rate: int = 10, process_position: int = 0, leave: bool = False) -> None:
        super().__init__(refresh_rate=refresh_rate, process_position=process_position, leave=leave)
        self.values: dict[str, str] = {}  # what the bar shows after the counts, set by ConsoleLog

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        super().setup(trainer, pl_module, stage)
        if not sys.stdout.isatty():
            self.disable()  # a redirected stdout gets ConsoleLog's plain lines instead of redrawn bars

    def drawing(self) -> bool:
        """Whether a bar is on screen now (tqdm.write keeps a printed line above it)."""
        return any(
            bar is not None and not bar.disable
            for bar in (self._train_progress_bar, self._val_progress_bar, self._test_progress_bar)
        )

    ORDER = ("loss", "lr", "tok/s", "mfu", "val")

    def get_metrics(self, trainer: L.Trainer, pl_module: L.LightningModule) -> dict:
        # not Lightning's: no v_num, and the values as ConsoleLog formats them (val loss to 4 decimals)
        return {k: self.values[k] for k in self.ORDER if k in self.values}

    def show(self, **values: str) -> None:
        """Put values on the training bar (redrawn now if it is on screen)."""
        self.values.update(values)
        if self._train_progress_bar is not None and not self._train_progress_bar.disable:
            self._train_progress_bar.set_postfix(self.get_metrics(self.trainer, self.trainer.lightning_module))

    def init_train_tqdm(self) -> Tqdm:
        bar = super().init_train_tqdm()
        bar.unit = "step"
        return bar

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        super().on_train_start(trainer, pl_module)
        bar = self.train_progress_bar
        bar.set_description("train")
        bar.total = trainer.max_steps if trainer.max_steps > 0 else None  # an endless stream has no epochs
        bar.initial = bar.n = trainer.global_step  # a resumed run continues from its step
        bar.refresh()

    def on_train_epoch_start(self, trainer: L.Trainer, *_) -> None:
        pass  # steps, not batches of an epoch: Lightning would reset the count and write "Epoch 0"

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs, batch, batch_idx) -> None:
        if (batch_idx + 1) % trainer.accumulate_grad_batches:
            return
        step = trainer.global_step
        if self._train_progress_bar is not None and self._should_update(step, self.train_progress_bar.total):
            self.train_progress_bar.set_postfix(self.get_metrics(trainer, pl_module), refresh=False)
            _update_n(self.train_progress_bar, step)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        pass  # an epoch of a finite stream does not end the step count


class ConsoleLog(L.Callback):
    """The training loss (mean over the logging window), LR, tokens/s and MFU at each logging step, and each
    validation's loss and bits per byte: onto GPTProgressBar when it is drawn, else one plain line each."""

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.is_global_zero:
            for line in startup_lines(trainer, pl_module):
                print(line, flush=True)
            note = schedule_cut_short(trainer.max_steps, getattr(pl_module, "hparams", {}))
            if note:
                print(note, file=sys.stderr, flush=True)

    @rank_zero_only
    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs, batch, batch_idx) -> None:
        if not is_logging_step(trainer, batch_idx):
            return
        metrics = trainer.callback_metrics  # as logged at this step: reading them is this step's host sync
        loss, lr = metric(metrics, "train/loss"), metric(metrics, "train/lr")
        tokens_per_sec, mfu = throughput_at(trainer)
        bar = active_bar(trainer)
        if bar is not None:
            shown = {"loss": f"{loss:.4f}" if loss is not None else None, "lr": f"{lr:.2e}" if lr is not None else None}
            shown["tok/s"] = f"{tokens_per_sec:,.0f}" if tokens_per_sec is not None else None
            shown["mfu"] = f"{mfu:.1%}" if mfu is not None else None
            bar.values.update({k: v for k, v in shown.items() if v is not None})  # drawn at the next refresh
            return
        parts = [f"loss {loss:.4f}" if loss is not None else "loss -", f"lr {lr:.2e}" if lr is not None else "lr -"]
        parts.append(f"{tokens_per_sec:,.0f} tokens/s" if tokens_per_sec is not None else "- tokens/s")
        parts.append(f"mfu {mfu:.1%}" if mfu is not None else "mfu -")
        print(f"step {step_of(trainer)}: " + ", ".join(parts), flush=True)

    @rank_zero_only
    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.state.fn != "fit":
            return
        loss, bpb = validation_result(trainer, pl_module)
        if loss is None:
            return
        line = f"step {trainer.global_step}: val loss {loss:.4f}" + (f", val bpb {bpb:.4f}" if bpb is not None else "")
        bar = active_bar(trainer)
        if bar is not None:
            bar.show(val=f"{loss:.4f}")
        say(trainer, line)


def validation_result(trainer: L.Trainer, pl_module: L.LightningModule) -> tuple[Optional[float], Optional[float]]:
    """(val/loss, val/bpb) of the validation that just ended, the step-0 sanity validation included (Lightning
    keeps nothing of it; the module leaves its results in `last_validation`)."""
    metrics = getattr(pl_module, "last_validation", None) or trainer.callback_metrics
    return metric(metrics, "val/loss"), metric(metrics, "val/bpb")


def throughput_at(trainer: L.Trainer) -> tuple[Optional[float], Optional[float]]:
    """(tokens/s, MFU) the ThroughputLogger measured over its latest window (None: not measured yet, unknown)."""
    throughput = next((c for c in trainer.callbacks if hasattr(c, "latest") and hasattr(c, "pause")), None)
    latest = getattr(throughput, "latest", None)
    return (latest[1], latest[2]) if latest else (None, None)


def startup_lines(trainer: L.Trainer, pl_module: L.LightningModule) -> list[str]:
    """What nanoGPT prints before training (its parameters; tokens per step and the AdamW groups are printed as they
    are set up), and where this run writes."""
    lines = []
    model = getattr(pl_module, "model", None)
    if hasattr(model, "get_num_params"):
        c = model.config
        lines.append(
            f"model: {model.get_num_params() / 1e6:.2f}M parameters ({c.n_layer} layers, {c.n_head} heads, "
            f"{c.n_embd} wide, block {c.block_size}, vocab {c.vocab_size})"
        )
    log_dir, log_root = log_folders(trainer)
    if log_dir:
        see = f" (`tensorboard --logdir {log_root}`, then {TENSORBOARD_URL})" if log_root else ""
        lines.append(f"logs: {log_dir}{see}")
    ckpt = trainer.checkpoint_callback
    if isinstance(ckpt, ModelCheckpoint) and ckpt.dirpath:
        lines.append(f"checkpoints: {shown_path(ckpt.dirpath)}")
    return lines


def schedule_cut_short(max_steps: int, hp) -> Optional[str]:
    """A note when max_steps ends the run before the LR schedule has decayed (lr_decay_steps > max_steps): the
    run's last LR is then well above min_lr, which nothing else would say."""
    from gpt_lightning.train.options import pick
    from gpt_lightning.train.schedules import ScheduleSettings

    if max_steps is None or max_steps <= 0 or "learning_rate" not in hp:
        return None
    schedule = ScheduleSettings(**pick(ScheduleSettings, hp))
    if schedule.name == "constant" or schedule.lr_decay_steps <= max_steps:
        return None
    peak = hp["learning_rate"]
    last = schedule.lr(max_steps - 1, peak)
    return (
        f"note: --trainer.max_steps {max_steps} ends the run before the LR schedule does (--model.lr_decay_steps "
        f"{schedule.lr_decay_steps}): the last step trains at {last:.2e}, {last / peak:.0%} of the peak "
        f"{peak:.2e}, not min_lr {schedule.min_lr:.2e}; set --model.lr_decay_steps {max_steps} to decay fully."
    )


def log_folders(trainer: L.Trainer) -> tuple[Optional[str], Optional[str]]:
    """(this run's log folder, the folder to point TensorBoard at: the runs of this name side by side)."""
    for logger in trainer.loggers:
        if isinstance(logger, TensorBoardLogger):
            return logger.log_dir, logger.root_dir
    if trainer.loggers:
        log_dir = trainer.loggers[0].log_dir
        return log_dir, None
    return None, None


class RunSummary(L.Callback):
    """When training ends (max_steps, a stop by signal, a non-finite loss): steps and tokens, wall time, final and
    best val loss and bpb, the checkpoints, the log folder, and the commands to look at and sample from the run."""

    def __init__(self) -> None:
        self.started: Optional[float] = None
        self.start_step = 0
        self.tokens_per_step = 0
        self.validations: list[tuple[int, float, Optional[float]]] = []  # (step, val loss, val bpb)
        self.printed = False

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.started, self.start_step, self.printed = time.monotonic(), trainer.global_step, False

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs, batch, batch_idx) -> None:
        if not self.tokens_per_step:
            x = batch[0] if isinstance(batch, (tuple, list)) else batch
            self.tokens_per_step = x.numel() * trainer.accumulate_grad_batches * trainer.world_size  # a shape

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.state.fn == "fit" and trainer.is_global_zero:
            loss, bpb = validation_result(trainer, pl_module)
            if loss is not None:
                self.validations.append((trainer.global_step, loss, bpb))

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        stopping = next((c.stopping for c in trainer.callbacks if type(c).__name__ == "LastCheckpoint"), None)
        self.report(trainer, f"stopped by {signal_name(stopping)}" if stopping else "finished")

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        from gpt_lightning.train.nonfinite import NonFiniteLossError
        from gpt_lightning.train.safety import TrainingInterrupted

        if isinstance(exception, TrainingInterrupted):
            self.report(trainer, f"stopped by {signal_name(exception.signum)}")
        elif isinstance(exception, NonFiniteLossError):
            self.report(trainer, "stopped: the loss became NaN or infinite (see the message below)")

    def report(self, trainer: L.Trainer, how: str) -> None:
        if self.printed or self.started is None or not trainer.is_global_zero or trainer.state.fn != "fit":
            return
        self.printed = True
        bar = trainer.progress_bar_callback
        if bar is not None and bar.is_enabled and getattr(bar, "_train_progress_bar", None) is not None:
            bar.train_progress_bar.close()  # the summary goes below the bar, not through it
        print("\n".join(summary_lines(trainer, self, how)), flush=True)


def signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


def summary_lines(trainer: L.Trainer, summary: RunSummary, how: str) -> list[str]:
    step = trainer.global_step
    done = step - summary.start_step
    wall = time.monotonic() - summary.started
    lines = [f"run {how} at step {step_of(trainer)}"]
    this_run = f" ({done:,} this run)" if summary.start_step else ""
    tokens = f", {done * summary.tokens_per_step:,} tokens" if summary.tokens_per_step else ""
    lines.append(f"  steps:       {step:,}{this_run}{tokens}, {duration(wall)}")
    if summary.validations:
        last_step, last_loss, last_bpb = summary.validations[-1]
        best_step, best_loss, best_bpb = min(summary.validations, key=lambda v: (math.isnan(v[1]), v[1]))
        bpb = lambda v: f", bpb {v:.4f}" if v is not None else ""  # noqa: E731
        lines.append(f"  val loss:    {last_loss:.4f}{bpb(last_bpb)} at step {last_step} (final)")
        lines.append(f"               {best_loss:.4f}{bpb(best_bpb)} at step {best_step} (best)")
    ckpt = trainer.checkpoint_callback
    best = getattr(ckpt, "best_model_path", "") if isinstance(ckpt, ModelCheckpoint) else ""
    last = next((c.last_model_path for c in trainer.callbacks if type(c).__name__ == "LastCheckpoint"), "")
    if best:
        lines.append(f"  best ckpt:   {shown_path(best)}")
    if last and Path(last).is_file():
        lines.append(f"  last ckpt:   {shown_path(last)}")
    log_dir, log_root = log_folders(trainer)
    if log_dir:
        lines.append(f"  logs:        {log_dir}")
    lines.append("next:")
    if log_root:
        lines.append(f"  tensorboard --logdir {log_root}   # then open {TENSORBOARD_URL}")
    sample_from = best or last
    if sample_from:
        lines.append(f"  python -m gpt_lightning generate --ckpt_path {shown_path(sample_from)}")
    if last and how != "finished":
        lines.append("  the same command plus --ckpt_path last continues this run")
    return lines


def shown_path(path: str) -> str:
    """A path as short as it can be said from here: relative when it is under the working directory."""
    try:
        return str(Path(path).resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def duration(seconds: float) -> str:
    minutes, s = divmod(round(seconds), 60)
    hours, m = divmod(minutes, 60)
    return f"{hours} h {m} min" if hours else f"{m} min {s} s" if m else f"{seconds:.1f} s"
