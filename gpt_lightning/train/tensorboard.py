"""What TensorBoard shows: a CUSTOM SCALARS layout that opens on the losses, and an HPARAMS entry for the run.

The layout is one list (CHARTS, below): a chart per entry, in the order a person reads them. A chart whose
metric this run does not log (MFU on a device without a known peak, HellaSwag when it is off) is left out, so
no chart says "no data". docs/monitoring.md says what each chart means.
"""

from __future__ import annotations

import math
import os
from typing import Callable, NamedTuple, Optional, Union

import lightning as L
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.utilities import rank_zero_only


class Chart(NamedTuple):
    group: str  # a collapsible section of the custom-scalars dashboard
    title: str
    tags: tuple[str, ...]  # drawn together on one chart
    shown: Callable[[L.Trainer], bool] = lambda trainer: True


def _callback(trainer: L.Trainer, name: str) -> Optional[L.Callback]:
    return next((cb for cb in trainer.callbacks if type(cb).__name__ == name), None)


def _mfu_known(trainer: L.Trainer) -> bool:
    throughput = _callback(trainer, "ThroughputLogger")
    return throughput is not None and bool(throughput.peak and throughput.flops_per_token)


def _hellaswag_on(trainer: L.Trainer) -> bool:
    return getattr(_callback(trainer, "HellaSwagEval"), "examples", None) is not None


def _epochs_logged(trainer: L.Trainer) -> bool:
    return _callback(trainer, "EpochMonitor") is not None and hasattr(trainer.datamodule, "epochs_seen")


CHARTS = [
    Chart("1 losses", "loss: train and val", ("train/loss", "val/loss")),
    Chart("1 losses", "val/bpb (bits per byte: across tokenizers)", ("val/bpb",)),
    Chart("1 losses", "val/perplexity", ("val/perplexity",)),
    Chart("2 optimizer", "train/lr", ("train/lr",)),
    Chart("2 optimizer", "train/grad_norm (before clipping)", ("train/grad_norm",)),
    Chart("2 optimizer", "train/tokens", ("train/tokens",)),
    Chart("2 optimizer", "train/epoch", ("train/epoch",), _epochs_logged),
    Chart("3 throughput", "perf/tokens_per_sec", ("perf/tokens_per_sec",), lambda t: _callback(t, "ThroughputLogger")),
    Chart("3 throughput", "perf/mfu", ("perf/mfu",), _mfu_known),
    Chart("4 evaluation", "HellaSwag", ("eval/hellaswag_acc_norm", "eval/hellaswag_acc"), _hellaswag_on),
]


def custom_scalars_layout(trainer: L.Trainer) -> dict:
    """CHARTS this run logs, as SummaryWriter.add_custom_scalars takes them ({group: {title: [kind, regexes]}})."""
    layout: dict[str, dict[str, list]] = {}
    for chart in CHARTS:
        if chart.shown(trainer):
            regexes = [f"^{tag}$" for tag in chart.tags]  # exact tags: val/loss must not also draw val/loss_x
            layout.setdefault(chart.group, {})[chart.title] = ["Multiline", regexes]
    return layout


HIDDEN_HPARAMS = ("tokenizer", "init_from", "init_optimizer_state", "_instantiator")


def readable(value) -> Union[int, float, str]:
    """A value as HPARAMS shows it well: booleans as `true`/`false` (not 1.0000), None as `none`; numbers as they
    are (they sort and filter as numbers), anything else as its text."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "none"
    return value if isinstance(value, (int, float, str)) else str(value)


def hparams_of_run(trainer: L.Trainer, pl_module: L.LightningModule) -> dict:
    """The settings a comparison of runs needs: model, optimizer and schedule (the module's hparams), data and
    batch, the trainer basics and the seed."""
    params = {k: v for k, v in pl_module.hparams.items() if k not in HIDDEN_HPARAMS}
    tokenizer = pl_module.hparams.get("tokenizer") or {}
    params["tokenizer"] = tokenizer.get("kind")
    data = trainer.datamodule
    for key in ("data_dir", "source", "batch_size", "val_batches", "tokens_per_step", "seed", "sampling"):
        if hasattr(data, key):
            params[f"data.{key}"] = getattr(data, key)
    params.update(
        {
            "seed": os.environ.get("PL_GLOBAL_SEED"),  # seed_everything's
            "trainer.max_steps": trainer.max_steps,
            "trainer.accumulate_grad_batches": trainer.accumulate_grad_batches,
            "trainer.gradient_clip_val": trainer.gradient_clip_val,
            "trainer.precision": trainer.precision,
            "trainer.world_size": trainer.world_size,
        }
    )
    return {k: readable(v) for k, v in params.items()}


# HPARAMS' metrics: the last value of each; the best ones are logged as running minima (BestValidation)
HPARAMS_METRICS = ("val/loss", "val/bpb", "val/best_loss", "val/best_bpb")


class TensorBoardLayout(L.Callback):
    """Writes the custom-scalars layout and the HPARAMS entry into every TensorBoard log, once, at the first training
    batch (when every callback has set up what it will log); logs val/best_loss and val/best_bpb at each validation.

    HPARAMS: only the run's settings are written (a session), not an "experiment" (the list of columns): TensorBoard
    then builds the table from all the runs it reads, and puts first the settings whose values differ between them
    (it sorts by "differs", then by name). An experiment written by one run would fix the columns to that run's, in
    alphabetical order, where two runs that differ in learning rate look alike."""

    def __init__(self) -> None:
        self.written = False
        self.best: dict[str, float] = {}

    @rank_zero_only
    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch, batch_idx: int) -> None:
        if self.written:
            return
        self.written = True
        from torch.utils.tensorboard.summary import hparams

        layout = custom_scalars_layout(trainer)
        # The metrics' values come from their scalars: no placeholder point is written for them.
        _, start, end = hparams(hparams_of_run(trainer, pl_module), dict.fromkeys(HPARAMS_METRICS, float("nan")))
        for writer in tensorboard_writers(trainer):
            writer.add_custom_scalars(layout)
            for summary in (start, end):
                writer.file_writer.add_summary(summary)
            writer.flush()

    @rank_zero_only
    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.state.fn != "fit":
            return
        validation = getattr(pl_module, "last_validation", None) or {}  # the step-0 sanity validation included
        for key in ("val/loss", "val/bpb"):
            if key in validation:
                value = float(validation[key])
                best_key = key.replace("val/", "val/best_")
                self.best[best_key] = min(value, self.best.get(best_key, math.inf))
        for lg in trainer.loggers:
            if isinstance(lg, TensorBoardLogger) and self.best:
                lg.log_metrics(dict(self.best), step=trainer.global_step)


def tensorboard_writers(trainer: L.Trainer) -> list:
    return [lg.experiment for lg in trainer.loggers if isinstance(lg, TensorBoardLogger)]
