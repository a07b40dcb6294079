"""The LightningCLI behind `fit`, `validate`, `test` and `predict`: GPTLightningModule x TokenBinDataModule,
so every `--model.*`, `--data.*` and `--trainer.*` option comes from a typed, documented signature, plus
the callbacks that are always there (checkpoints, samples, throughput, HellaSwag) as their own option groups.
"""

from __future__ import annotations

import importlib
import inspect
import os
import signal
import sys
import threading
import warnings
from pathlib import Path
from typing import Optional

from jsonargparse import ArgumentError, DefaultHelpFormatter
from lightning.pytorch import Trainer
from lightning.pytorch.callbacks import ModelCheckpoint, ProgressBar
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.utilities import rank_zero_info

from gpt_lightning.cli import LIGHTNING_SUBCOMMANDS, argument_error_message, fit_checkpoints, refuse_url
from gpt_lightning.cli.help import organize_help
from gpt_lightning.data.datamodule import TokenBinDataModule, settle_data_options
from gpt_lightning.data.sampling import EpochMonitor
from gpt_lightning.errors import UserError
from gpt_lightning.files import remove_stale_temporaries
from gpt_lightning.hardware import auto_precision, enable_tf32
from gpt_lightning.train import runs, safety
from gpt_lightning.train.callbacks import LastCheckpoint, TextSampleCallback
from gpt_lightning.train.console import ConsoleLog, GPTProgressBar, RunSummary, quiet_lightning_startup, run_last
from gpt_lightning.train.fsdp import fsdp_strategy
from gpt_lightning.train.hellaswag import HellaSwagEval
from gpt_lightning.train.module import GPTLightningModule
from gpt_lightning.train.runlock import RunLock, is_first_process
from gpt_lightning.train.tensorboard import TensorBoardLayout
from gpt_lightning.train.throughput import ThroughputLogger
from gpt_lightning.weights.load import default_pad_vocab_multiple

# The validation dataset has a length so progress bars know their total; it is not split over workers, so
# Lightning's warning about lengths with several workers does not apply.
warnings.filterwarnings("ignore", message=r".*`IterableDataset` has `__len__` defined.*")
# Lightning's advertising ("💡 Tip: ...") and its GPU/TPU availability lines; its other messages are kept
quiet_lightning_startup()
# ModelCheckpoint warns whenever its folder has files (run.lock, a resumed run's checkpoints); a new run into a
# folder with checkpoints is refused before this (fit_checkpoints.refuse_to_overwrite_run): the warning adds nothing
warnings.filterwarnings("ignore", message=r"Checkpoint directory .* exists and is not empty")
# Deprecations inside Lightning 2.6's own calls into jsonargparse and torch, which nothing here can change
warnings.filterwarnings("ignore", message=r".*skip_none parameter was deprecated.*")
warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)` is deprecated.*")


class HelpFormatter(DefaultHelpFormatter):
    """jsonargparse's help, with a default that would print as blank or break the line (a newline prompt) shown
    as Python writes it: '\\n'."""

    def _get_help_string(self, action) -> str:
        text = super()._get_help_string(action)
        default = action.default
        if isinstance(default, str) and (not default.isprintable() or default != default.strip() or not default):
            text = text.replace("%(default)s", repr(default).replace("%", "%%"))
        return text


# Every callback the CLI adds, registered here and in GPTLightningCLI.with_added_callbacks (those without settings).
# These have settings: an option group each (`--KEY.*`), titled for this project (a group's title is otherwise the
# first line of its class docstring: ModelCheckpoint's speaks of saving "after every epoch").
CALLBACK_GROUPS = {
    "checkpoint": (
        ModelCheckpoint,
        "The best checkpoint by val/loss (best-stepNNNNNN-valX.XXXX.ckpt), kept after each validation "
        "(Lightning's ModelCheckpoint)",
    ),
    "last_checkpoint": (LastCheckpoint, "last.ckpt, to resume from (--ckpt_path last)"),
    "sample": (TextSampleCallback, "A generated text sample in TensorBoard after each validation"),
    "throughput": (ThroughputLogger, "Tokens per second and MFU (perf/tokens_per_sec, perf/mfu)"),
    "eval": (HellaSwagEval, "HellaSwag accuracy while training (eval/hellaswag_acc_norm)"),
}

# LearningRateMonitor's options, replaced by train/lr (logged by the module with train/loss)
REMOVED_LR_MONITOR = (
    "--lr_monitor.* options are gone: the learning rate is logged as train/lr every --trainer.log_every_n_steps "
    "steps, one curve for all parameter groups; remove the lr_monitor options (or the lr_monitor: section)."
)


class GPTLightningCLI(LightningCLI):
    def __init__(self, args=None, run: bool = True) -> None:
        if any(str(arg).startswith("--lr_monitor") for arg in (sys.argv[1:] if args is None else args)):
            raise UserError(REMOVED_LR_MONITOR)
        self.run_lock: Optional[RunLock] = None  # taken for a `fit` that runs now (before_instantiate_classes)
        self.runs_now = run
        self.previous_handlers: dict = {}  # the SIGINT and SIGTERM handlers before_validate replaced
        formatting = {"prog": "python -m gpt_lightning", "formatter_class": HelpFormatter}
        try:
            super().__init__(
                GPTLightningModule,
                TokenBinDataModule,
                seed_everything_default=1337,
                # the module's configure_optimizers (decay groups + LR schedule) must not be replaced silently
                auto_configure_optimizers=False,
                # a resumed or requeued run reuses its log folder
                save_config_kwargs={"overwrite": True},
                # num_sanity_val_steps=-1: the sanity check validates on every val batch, logged as the val/loss at
                # the starting step (see GPTLightningModule.on_validation_epoch_end); 0 skips it
                # enable_model_summary: the start-up prints the parameters instead (train/console.py), as nanoGPT
                trainer_defaults={
                    "max_epochs": -1,
                    "log_every_n_steps": 50,
                    "num_sanity_val_steps": -1,
                    "enable_model_summary": False,
                },
                # a mistake in the options is one line and a hint (parse_arguments), not ~100 lines of usage
                parser_kwargs={
                    "exit_on_error": False,
                    **formatting,
                    **{name: dict(formatting) for name in LIGHTNING_SUBCOMMANDS},
                },
                args=args,
                run=run,
            )
        finally:  # with run=True the subcommand has run inside the constructor
            if self.run_lock is not None:
                self.run_lock.release()
            for sig, handler in self.previous_handlers.items():
                signal.signal(sig, handler)

    def before_validate(self) -> None:
        # Ctrl-C or SIGTERM while nothing is being trained (validate, test, predict, and fit's validation before its
        # first step): one line and status 128 + signal, as a requeue script must see it (Lightning turns a
        # KeyboardInterrupt into status 1, and ends on SIGTERM with status 0); nothing to save. While `fit` trains,
        # its own handlers (train/safety.py: StopRequest, installed by LastCheckpoint) replace these and save first.
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self.previous_handlers.setdefault(sig, signal.signal(sig, safety.exit_at_once))

    before_fit = before_test = before_predict = before_validate

    def parse_arguments(self, parser: LightningArgumentParser, args) -> None:
        """Parse; with --ckpt_path, parse again with the checkpoint's hyperparameters as parser defaults, so that
        defaults < checkpoint < config file < command line. (LightningCLI 2.6 itself applies them over the config
        file and command line, right after this hook: #21455, open. It is kept from seeing the path, which
        before_instantiate_classes gives back; tests/test_compat.py checks that Lightning still works this way.)"""
        self.command_line = [str(a) for a in (sys.argv[1:] if args is None else args if isinstance(args, list) else [])]
        try:
            super().parse_arguments(parser, args)
        except ArgumentError as e:
            raise UserError(argument_error_message(str(e), self.known_keys)) from e
        subcommand = self.config.get("subcommand")
        self.resume_from = None  # (path, memory-mapped checkpoint) to check against the model once it is built
        if not subcommand:
            return
        config = expand_home_in_paths(self.config[subcommand])
        checkpoint_dir = config.checkpoint.dirpath or self.run_folder(config)  # --run_name's newest run (runs.py)
        ckpt_path = fit_checkpoints.resolve_ckpt_path(config.get("ckpt_path"), checkpoint_dir)
        if ckpt_path and Path(ckpt_path).is_file():
            self.resume_from = (ckpt_path, fit_checkpoints.load_checkpoint_meta(ckpt_path))
            hparams = self.resume_from[1].get("hyper_parameters", {})
            known = set(inspect.signature(GPTLightningModule.__init__).parameters) - {"self"}
            defaults = fit_checkpoints.checkpoint_hparams_as_defaults(hparams, known)
            if defaults and (args is None or isinstance(args, list)):
                parser.set_defaults({f"{subcommand}.{key}": value for key, value in defaults.items()})
                self.config = parser.parse_args(args)
                expand_home_in_paths(self.config[subcommand])
            if self.config[subcommand].model.get("init_from", "scratch") != "scratch":
                # the checkpoint's weights replace any initial ones: do not load (or download) pretrained weights
                self.config[subcommand].model.init_from = "scratch"
        self.resolved_ckpt_path = ckpt_path
        self.config[subcommand]["ckpt_path"] = None  # hidden from LightningCLI's own checkpoint parsing (#21455)

    @staticmethod
    def run_folder(config) -> Optional[str]:
        """Name the run's logger after --run_name (runs.py) and return where `--ckpt_path last` looks: the newest
        out/NAME/version_N/checkpoints with a last.ckpt (else out/NAME, which has none)."""
        run_name = config.get("run_name") or runs.default_run_name(config.get("config"))
        where = runs.apply_run_name(config.trainer, run_name, given=config.get("run_name") is not None)
        return str(runs.latest_checkpoint_dir(*where) or Path(*where)) if where else None

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        self.subcommand_parsers = [*getattr(self, "subcommand_parsers", []), parser]
        parser.add_argument(
            "--run_name",
            type=Optional[str],
            default=None,
            help="Name of the run: logs and checkpoints go to out/NAME/version_N/ (a new N for each run, nothing "
            "overwritten; --ckpt_path last continues the newest). None: the --config file's stem, else `run`. An "
            "explicit --checkpoint.dirpath still sets the checkpoint folder.",
        )
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
        for key, (callback, title) in CALLBACK_GROUPS.items():  # each callback with settings: --KEY.* options
            parser.add_lightning_class_args(callback, key)
            parser.groups[key].title = title
        parser.set_defaults(
            {
                "checkpoint.monitor": "val/loss",
                "checkpoint.mode": "min",
                "checkpoint.save_top_k": 1,
                "checkpoint.filename": "best-step{step:06d}-val{val/loss:.4f}",
                "checkpoint.auto_insert_metric_name": False,
            }
        )
        parser.link_arguments("checkpoint.dirpath", "last_checkpoint.dirpath")

    def _prepare_subcommand_parser(self, klass, subcommand: str, **kwargs) -> LightningArgumentParser:
        parser = super()._prepare_subcommand_parser(klass, subcommand, **kwargs)
        organize_help(parser, f"python -m gpt_lightning {subcommand}")  # most used options first (cli/help.py)
        return parser

    @property
    def known_keys(self) -> list[str]:
        """Every option a subcommand takes, dotted (`model.n_layer`), for the hint after a misspelled one."""
        keys: set[str] = set()
        for parser in getattr(self, "subcommand_parsers", []):
            keys.update(k for k in parser.get_defaults().keys() if k != "__path__")
        return sorted(keys)

    def subcommand_config(self, config):
        """The part of a (parsed or instantiated) config that belongs to the subcommand being run."""
        return config[self.subcommand] if self.subcommand else config

    def before_instantiate_classes(self) -> None:
        # Nothing here or before the Trainer exists touches CUDA: a CUDA context in this process would break
        # `ddp_fork` and notebook launches. The GPU's bf16 and TF32 are set up in the training process.
        config = self.subcommand_config(self.config)
        if self.subcommand:
            config["ckpt_path"] = self.resolved_ckpt_path  # see parse_arguments
            if config.get("weights_only") is False:
                raise UserError(
                    "--weights_only=false would let a checkpoint run code when it is read; drop it (a checkpoint "
                    "written by `fit` holds tensors and plain values only)."
                )
            # Lightning reads the checkpoint again after read_checkpoint checked it: tensors only there too
            config["weights_only"] = True
            self.run_folder(config)  # the logger's name, on the final config (parse_arguments may parse again)
        if "://" in str(config.model.get("init_from") or ""):  # (from a config file; the command line is checked first)
            refuse_url("--model.init_from", config.model.init_from)
        trainer = config.trainer
        if trainer.precision is None and not has_precision_plugin(trainer.get("plugins")):
            trainer.precision = auto_precision(trainer.accelerator)  # bf16-mixed on a GPU, else 32-true
        if config.get("val_every_n_steps") is not None and config.val_every_n_steps < 1:
            raise UserError(
                f"--val_every_n_steps must be at least 1, got {config.val_every_n_steps}; leave it unset (null) to "
                "validate by --trainer.val_check_interval instead."
            )
        if trainer.max_steps is not None and trainer.max_steps < -1:
            raise UserError(f"--trainer.max_steps must be -1 (no limit) or at least 0, got {trainer.max_steps}.")
        if no_logger(trainer.get("logger")):
            # Lightning would write config.yaml into trainer.log_dir, which is the working directory without a
            # logger: a user's own config.yaml there would be replaced. The checkpoints hold the settings anyway.
            self.save_config_callback = None
        if self.resume_from:  # the checkpoint's shapes against the model's, on the meta device, before it is built
            path, ckpt = self.resume_from
            theirs = ckpt.get("hyper_parameters") or {}
            if theirs.get("vocab_size") is not None:  # (the data's vocabulary is compared once the model is built)
                building = {
                    **config.model.as_dict(),
                    "block_size": config.data.block_size,
                    "vocab_size": theirs["vocab_size"],
                    "pad_vocab_multiple": config.model.get("pad_vocab_multiple")
                    or theirs.get("pad_vocab_multiple")
                    or default_pad_vocab_multiple(theirs.get("tokenizer")),
                    "tokenizer": None,
                }
                fit_checkpoints.check_checkpoint_fits_before_building(path, ckpt, building)
            if self.subcommand == "fit":  # (validate, test and predict read the weights alone)
                fit_checkpoints.check_same_optimizer(path, ckpt, config.model.optimizer)
        if self.subcommand == "fit" and not config.get("ckpt_path"):
            fit_checkpoints.refuse_to_overwrite_run(config.checkpoint.dirpath)  # early; again under the lock
        # the named step that may download and tokenize --data.source, before argument linking reads meta.json; a
        # preset's source is only for its own folder, a tokenizer must agree with the folder
        settle_data_options(config.data, self.command_line)

    def after_instantiate_classes(self) -> None:
        super().after_instantiate_classes()
        if self.resume_from:
            path, ckpt = self.resume_from
            fit_checkpoints.check_checkpoint_fits(path, ckpt, self.model, dict(self.model.hparams))
            self.resume_from = None  # the mmap'ed checkpoint is not needed any more
        dirpath = self.config.fit.checkpoint.dirpath if self.subcommand == "fit" else None
        if dirpath and self.runs_now and is_first_process():
            # one run per folder, for as long as it runs; the check for an earlier run's checkpoints is only
            # race-free under it (train/runlock.py)
            self.run_lock = RunLock(dirpath).acquire()
            if not self.config.fit.get("ckpt_path"):
                fit_checkpoints.refuse_to_overwrite_run(dirpath)
        if dirpath:
            remove_stale_temporaries(dirpath)  # of a run killed while saving

    def instantiate_trainer(self, **kwargs) -> Trainer:
        config = self.subcommand_config(self.config)
        trainer_config = self.subcommand_config(self.config_init)["trainer"]
        if config.trainer.strategy == "fsdp" and "strategy" not in kwargs:
            kwargs["strategy"] = fsdp_strategy()
        # checkpoints are written atomically, unless the user configured a CheckpointIO of their own
        kwargs = {"plugins": safety.with_atomic_checkpoint_io(trainer_config.get("plugins")), **kwargs}
        # Lightning's default progress bar is Rich's when `rich` happens to be installed, redrawn every batch
        # (on a near-zero-compute model, ~0.5-1 ms per step more than no bar). Ours is TQDM's (train/console.py:
        # steps of max_steps, loss, LR, tokens/s), redrawn every 10 steps: the same bar whatever is installed.
        # A progress bar given in --trainer.callbacks replaces it; --trainer.enable_progress_bar=false turns it off.
        given = kwargs.get("callbacks", trainer_config.get("callbacks")) or []
        given = list(given) if isinstance(given, (list, tuple)) else [given]
        if trainer_config.get("enable_progress_bar", True) is not False and not any(
            isinstance(c, ProgressBar) for c in given
        ):
            kwargs["callbacks"] = [*given, GPTProgressBar(refresh_rate=10)]
        try:
            trainer = super().instantiate_trainer(**kwargs)
        except ValueError as e:  # the Trainer's checks of --trainer.* (FSDP on a CPU, ...): sentences about settings
            raise UserError(" ".join(str(e).split())) from e
        # the Trainer knows its device now; only a flag, set before Lightning's tensor-core hint would print
        enable_tf32(trainer.strategy.root_device)
        trainer.callbacks = self.with_added_callbacks(trainer, logged=not no_logger(trainer_config.get("logger")))
        # Done on the Trainer, not the config: only the Trainer knows how many devices "auto" or -1 resolves to.
        if self.subcommand in (None, "fit"):
            set_tokens_per_step(trainer, self.datamodule)
        if config.get("val_every_n_steps"):
            # Lightning counts val_check_interval in batches; after the accumulation is known
            trainer.val_check_interval = config.val_every_n_steps * trainer.accumulate_grad_batches
        return trainer

    def with_added_callbacks(self, trainer: Trainer, logged: bool) -> list:
        """The Trainer's callbacks (the user's and CALLBACK_GROUPS'), plus those the CLI adds without settings, each
        when it applies; those that show what the others measured run last (train/console.py)."""
        fit = self.subcommand in (None, "fit")
        tensorboard = any(isinstance(lg, TensorBoardLogger) for lg in trainer.loggers)
        added = [
            (EpochMonitor(), logged),  # train/epoch: passes over the train split
            (TensorBoardLayout(), tensorboard),  # the charts TensorBoard opens on, and HPARAMS
            (ConsoleLog(), fit),  # loss, LR and tokens/s on the console (a plain line without a terminal)
            (RunSummary(), fit),  # the end-of-run summary and the next commands
        ]
        # the text samples need a logger: with logging off, leave them out
        callbacks = [c for c in trainer.callbacks if logged or not isinstance(c, TextSampleCallback)]
        return run_last([*callbacks, *(callback for callback, applies in added if applies)])


def no_logger(logger) -> bool:
    """Whether --trainer.logger turns logging off: `false`, or an empty list (None means Lightning's default)."""
    return logger is False or (isinstance(logger, (list, tuple)) and len(logger) == 0)


def expand_home(value):
    """`~/x` -> `$HOME/x` for a str or Path option; anything else as it is."""
    if isinstance(value, (str, Path)) and str(value).startswith("~"):
        return type(value)(os.path.expanduser(str(value))) if isinstance(value, str) else Path(value).expanduser()
    return value


def expand_home_in_paths(config):
    """Expand `~` once in every path option, so that every writer gets the same folder: Lightning's ModelCheckpoint
    expands it itself, and last.ckpt and run.lock would otherwise go to a literal `./~/...`. Relative paths stay
    relative to the working folder, which every writer resolves them against. Returns the config."""
    config["ckpt_path"] = expand_home(config.get("ckpt_path"))
    for group, key in [
        ("checkpoint", "dirpath"),
        ("last_checkpoint", "dirpath"),
        ("data", "data_dir"),
        ("trainer", "default_root_dir"),
        ("model", "init_from"),
        ("eval", "hellaswag_path"),
    ]:
        if config.get(group) is not None and key in config[group]:
            config[group][key] = expand_home(config[group][key])
    loggers = config.trainer.get("logger") if config.get("trainer") is not None else None
    for logger in loggers if isinstance(loggers, (list, tuple)) else [loggers]:
        init_args = logger.get("init_args") if hasattr(logger, "get") else None
        if init_args is not None and "save_dir" in init_args:
            init_args["save_dir"] = expand_home(init_args["save_dir"])
    return config


def has_precision_plugin(plugins) -> bool:
    """Whether --trainer.plugins holds a precision plugin (e.g. MixedPrecision with a GradScaler of one's own),
    which Lightning refuses together with a precision setting."""
    from lightning.pytorch.plugins.precision import Precision

    for plugin in plugins if isinstance(plugins, (list, tuple)) else [plugins]:
        class_path = plugin.get("class_path") if hasattr(plugin, "get") else None
        if isinstance(plugin, Precision):
            return True
        if isinstance(class_path, str) and "." in class_path:
            module, _, name = class_path.rpartition(".")
            try:
                cls = getattr(importlib.import_module(module), name)
            except (ImportError, AttributeError):
                continue  # Lightning reports a plugin it cannot import
            if isinstance(cls, type) and issubclass(cls, Precision):
                return True
    return False


def set_tokens_per_step(trainer: Trainer, data: TokenBinDataModule) -> int:
    """Derive trainer.accumulate_grad_batches from data.tokens_per_step (when set), print how the global batch
    in tokens comes about, and return it."""
    micro = data.batch_size * data.block_size  # tokens per micro-batch per device
    world = trainer.num_devices * trainer.num_nodes
    per_pass = micro * world  # tokens of one micro-batch on every device together
    accumulate = trainer.accumulate_grad_batches
    if data.tokens_per_step is not None:
        derived, rest = divmod(data.tokens_per_step, per_pass)
        if rest or derived < 1:
            raise UserError(
                f"--data.tokens_per_step {data.tokens_per_step:,} is not a multiple of batch_size {data.batch_size} "
                f"x block_size {data.block_size} x {trainer.num_devices} device(s) x {trainer.num_nodes} node(s) = "
                f"{per_pass:,} tokens; choose a multiple of {per_pass:,} or change the batch size."
            )
        if accumulate not in (1, derived):
            raise UserError(
                f"--trainer.accumulate_grad_batches {accumulate} contradicts --data.tokens_per_step "
                f"{data.tokens_per_step:,}, which needs {derived}; set only one of them."
            )
        trainer.accumulate_grad_batches = accumulate = derived
    how = "derived from tokens_per_step" if data.tokens_per_step is not None else "as given"
    rank_zero_info(
        f"tokens per optimizer step: {data.batch_size} batch x {data.block_size} block x {trainer.num_devices} "
        f"device(s) x {trainer.num_nodes} node(s) x {accumulate} accumulation ({how}) = {per_pass * accumulate:,}"
    )
    return per_pass * accumulate
