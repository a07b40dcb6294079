"""The command line: `python -m gpt_lightning SUBCOMMAND ...`.

`fit`, `validate`, `test` and `predict` are a LightningCLI over GPTLightningModule and TokenBinDataModule,
so every `--model.*`, `--data.*` and `--trainer.*` option comes from a typed, documented signature.
The other subcommands (`prepare`, ...) are plain functions whose signatures jsonargparse turns into options.
"""

from __future__ import annotations

import sys
from typing import Callable, Optional

import torch
from lightning.pytorch.callbacks import ModelCheckpoint, ProgressBar, TQDMProgressBar
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI

from gpt_lightning.callbacks import LastCheckpoint, LearningRateLogger, TextSampleCallback
from gpt_lightning.data import TokenBinDataModule
from gpt_lightning.errors import reported_user_errors
from gpt_lightning.module import GPTLightningModule
from gpt_lightning.throughput import ThroughputLogger, enable_tf32

LIGHTNING_SUBCOMMANDS = ("fit", "validate", "test", "predict")


def auto_precision() -> str:
    """bf16 mixed precision where the GPU supports it, fp16 mixed on older GPUs, fp32 on CPU (where the mixed
    modes run about 10x slower)."""
    if torch.cuda.is_available():
        return "bf16-mixed" if torch.cuda.is_bf16_supported() else "16-mixed"
    return "32-true"


class GPTLightningCLI(LightningCLI):
    def __init__(self, args=None, run: bool = True) -> None:
        super().__init__(
            GPTLightningModule,
            TokenBinDataModule,
            seed_everything_default=1337,
            # the module's configure_optimizers (decay groups + LR schedule) must not be replaced silently
            auto_configure_optimizers=False,
            # a resumed or requeued run reuses its log folder
            save_config_kwargs={"overwrite": True},
            trainer_defaults={"max_epochs": -1, "log_every_n_steps": 50},
            args=args,
            run=run,
        )

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.link_arguments("data.block_size", "model.block_size")
        parser.link_arguments("data.vocab_size", "model.vocab_size", apply_on="instantiate")
        parser.link_arguments("data.tokenizer_meta", "model.tokenizer", apply_on="instantiate")
        parser.add_argument(
            "--val_every_n_steps",
            type=Optional[int],
            default=None,
            help="Validate every N optimizer steps (sets trainer.val_check_interval to N x accumulate_grad_batches, "
            "since Lightning counts it in batches).",
        )
        parser.add_lightning_class_args(ModelCheckpoint, "checkpoint")
        parser.set_defaults(
            {
                "checkpoint.monitor": "val/loss",
                "checkpoint.mode": "min",
                "checkpoint.save_top_k": 1,
                "checkpoint.filename": "best-step{step:06d}-val{val/loss:.4f}",
                "checkpoint.auto_insert_metric_name": False,
            }
        )
        parser.add_lightning_class_args(LastCheckpoint, "last_checkpoint")
        parser.link_arguments("checkpoint.dirpath", "last_checkpoint.dirpath")
        parser.add_lightning_class_args(LearningRateLogger, "lr_monitor")
        parser.set_defaults({"lr_monitor.logging_interval": "step"})
        parser.add_lightning_class_args(TextSampleCallback, "sample")
        parser.add_lightning_class_args(ThroughputLogger, "throughput")

    def before_instantiate_classes(self) -> None:
        enable_tf32()  # fp32 matmuls on tensor cores (Ampere and newer); before anything touches the GPU
        config = self.config[self.subcommand] if self.subcommand else self.config
        trainer = config.trainer
        if trainer.precision is None:
            trainer.precision = auto_precision()
        if config.get("val_every_n_steps"):
            trainer.val_check_interval = config.val_every_n_steps * (trainer.accumulate_grad_batches or 1)

    def instantiate_trainer(self, **kwargs):
        # Lightning's default progress bar is Rich's when `rich` happens to be installed, redrawn every batch
        # (on a near-zero-compute model, ~0.5-1 ms per step more than no bar). Ours is TQDM's, redrawn every
        # 10 batches: the same bar whatever is installed, and fewer redraws. A progress bar given in
        # --trainer.callbacks replaces it; --trainer.enable_progress_bar=false turns it off.
        trainer = self._get(self.config_init, "trainer", default={})
        callbacks = list(kwargs.get("callbacks", trainer.get("callbacks")) or [])
        if trainer.get("enable_progress_bar", True) is not False and not any(isinstance(c, ProgressBar) for c in callbacks):
            kwargs["callbacks"] = [*callbacks, TQDMProgressBar(refresh_rate=10)]
        return super().instantiate_trainer(**kwargs)


def run_prepare(args: list[str]) -> None:
    from jsonargparse import CLI

    from gpt_lightning.prepare import prepare

    meta = CLI(prepare, args=args)
    print(
        f"{meta['source']['corpus']}: vocab {meta['vocab_size']}, {meta['train_tokens']:,} train and "
        f"{meta['val_tokens']:,} val tokens ({meta['dtype']})"
    )


def run_bench(args: list[str]) -> None:
    from gpt_lightning.benchmarks.training import main as bench_main

    bench_main(args)


# Subcommands that are not LightningCLI ones: name -> function taking the remaining arguments.
EXTRA_SUBCOMMANDS: dict[str, Callable[[list[str]], None]] = {
    "prepare": run_prepare,
    "bench": run_bench,
}


USAGE = f"""usage: python -m gpt_lightning SUBCOMMAND [options]

subcommands:
  {', '.join(LIGHTNING_SUBCOMMANDS)}   LightningCLI: --config configs/NAME.yaml, --model.*, --data.*, --trainer.*
  {', '.join(EXTRA_SUBCOMMANDS)}   see `python -m gpt_lightning SUBCOMMAND --help`
"""


def main(argv: Optional[list[str]] = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    with reported_user_errors():
        if args and args[0] in EXTRA_SUBCOMMANDS:
            EXTRA_SUBCOMMANDS[args[0]](args[1:])
        elif not args or args[0] in ("-h", "--help"):
            print(USAGE)
        else:
            GPTLightningCLI(args=argv)  # None: LightningCLI reads sys.argv itself
