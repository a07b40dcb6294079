"""One run name: `--run_name NAME` names the log folder and, through it, the checkpoint folder.

    out/NAME/version_0/            TensorBoard's events, hparams.yaml, config.yaml
    out/NAME/version_0/checkpoints best-*.ckpt, last.ckpt
    out/NAME/version_1/...         the same command run again: a new run beside the earlier one

NAME defaults to the preset's name (the --config file's stem), else `run`. The version folders are the logger's
(TensorBoard's numbering, broadcast to every rank by Lightning), and with no --checkpoint.dirpath Lightning's
ModelCheckpoint saves into the run's own version folder, so re-running a command never refuses and never
overwrites. `--ckpt_path last` continues from the newest version of NAME that saved a last.ckpt (the continued run
writes a new version folder: the earlier one stays as it was). An explicit --checkpoint.dirpath works as before.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Optional

# TensorBoardLogger's and CSVLogger's name when none is configured
LIGHTNING_DEFAULT_NAME = "lightning_logs"
DEFAULT_LOGGER = "lightning.pytorch.loggers.TensorBoardLogger"


def default_run_name(config_paths) -> str:
    """The last --config file's stem (`shakespeare_char_cpu`), else `run`."""
    paths = [p for p in (config_paths or []) if p is not None]
    return Path(str(paths[-1])).stem if paths else "run"


def apply_run_name(trainer_config, run_name: str, given: bool) -> Optional[tuple[str, str]]:
    """Name the run's logger NAME (given on the command line, or the logger has no name of its own); with no logger
    configured, a given NAME adds a TensorBoardLogger under --trainer.default_root_dir (else out/), and no NAME leaves
    Lightning's default (DEFAULT_ROOT_DIR/lightning_logs). Returns (save_dir, name) of the logger, None without one."""
    logger = trainer_config.get("logger")
    if logger is False or (isinstance(logger, list) and not logger) or (logger in (None, True) and not given):
        return None  # no logger (False, or an empty list)
    if logger is None or logger is True:
        save_dir = trainer_config.get("default_root_dir") or "out"
        logger = {"class_path": DEFAULT_LOGGER, "init_args": {"save_dir": str(save_dir), "default_hp_metric": False}}
        trainer_config["logger"] = logger = _namespace(logger)
    first = logger[0] if isinstance(logger, list) else logger
    init_args = first.get("init_args") if hasattr(first, "get") else None
    if init_args is None:
        return None  # a logger instance given from Python: its name is its own
    if given or init_args.get("name") in (None, LIGHTNING_DEFAULT_NAME):
        init_args["name"] = run_name
    return str(init_args.get("save_dir") or "."), str(init_args["name"])


def latest_checkpoint_dir(save_dir: str, name: str) -> Optional[Path]:
    """save_dir/name/version_N/checkpoints of the newest version N that holds a last.ckpt (None: no such run)."""
    found = []
    for d in Path(save_dir, name).glob("version_*/checkpoints"):
        match = re.fullmatch(r"version_(\d+)", d.parent.name)
        if match and (d / "last.ckpt").is_file():
            found.append((int(match.group(1)), d))
    return max(found)[1] if found else None


def _namespace(d: dict):
    from jsonargparse import Namespace, dict_to_namespace

    return dict_to_namespace(d) if not isinstance(d, Namespace) else d
