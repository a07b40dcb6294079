"""What TensorBoard shows: a CUSTOM SCALARS layout that opens on the losses, and an HPARAMS entry for the run.

The layout is one list (CHARTS, below): a chart per entry, in the order a person reads them. A chart whose
metric this run does not log (MFU on a device without a known peak, HellaSwag when it is off) is left out, so
no chart says "no data". docs/monitoring.md says what each chart means.
"""

from __future__ import annotations

from typing import Callable, NamedTuple, Optional

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
    Chart("1 losses", "val/perplexity", ("val/perplexity",)),
    Chart("2 optimizer", "train/lr", ("train/lr",)),
    Chart("2 optimizer", "train/grad_norm (before clipping)", ("train/grad_norm",)),
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


def hparams_of_run(trainer: L.Trainer, pl_module: L.LightningModule) -> dict:
    """The settings a comparison of runs needs: model and optimizer (the module's hparams), data and batch."""
    params = {k: v for k, v in pl_module.hparams.items() if k not in HIDDEN_HPARAMS}
    tokenizer = pl_module.hparams.get("tokenizer") or {}
    params["tokenizer"] = tokenizer.get("kind")
    data = trainer.datamodule
    for key in ("data_dir", "batch_size", "val_batches", "tokens_per_step", "seed", "sampling"):
        if hasattr(data, key):
            params[f"data.{key}"] = getattr(data, key)
    params.update(
        {
            "trainer.max_steps": trainer.max_steps,
            "trainer.accumulate_grad_batches": trainer.accumulate_grad_batches,
            "trainer.gradient_clip_val": trainer.gradient_clip_val,
            "trainer.precision": trainer.precision,
            "trainer.world_size": trainer.world_size,
        }
    )
    # HPARAMS takes numbers, strings and booleans
    return {k: v if isinstance(v, (int, float, str, bool)) else str(v) for k, v in params.items()}


class TensorBoardLayout(L.Callback):
    """Writes the custom-scalars layout and the HPARAMS entry (val/loss as its metric) into every TensorBoard log,
    once, at the first training batch (when every callback has set up what it will log)."""

    def __init__(self) -> None:
        self.written = False

    @rank_zero_only
    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch, batch_idx: int) -> None:
        if self.written:
            return
        self.written = True
        from torch.utils.tensorboard.summary import hparams

        layout = custom_scalars_layout(trainer)
        # The metric's values come from the val/loss scalar itself: no placeholder point is written for it.
        experiment, start, end = hparams(hparams_of_run(trainer, pl_module), {"val/loss": float("nan")})
        for logger in trainer.loggers:
            if isinstance(logger, TensorBoardLogger):
                writer = logger.experiment
                writer.add_custom_scalars(layout)
                for summary in (experiment, start, end):
                    writer.file_writer.add_summary(summary)
                writer.flush()
