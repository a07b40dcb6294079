"""One run name (train/runs.py): without --checkpoint.dirpath, logs and checkpoints of each run go to
out/NAME/version_N/, the same command run again starts a new version beside the earlier one, `--ckpt_path last`
continues the newest, and --run_name names the folder."""

from __future__ import annotations

import pytest
import torch

from helpers import new_root, run_cli_in


@pytest.mark.slow  # four tiny fits
def test_runs_of_one_name_never_overwrite_and_last_continues_the_newest(tmp_path, data_root):
    root = new_root(tmp_path, data_root, **{"checkpoint.dirpath": None, "trainer.max_steps": 2})
    assert run_cli_in(root, ["fit", "--config", "tiny.yaml"]) == 0
    assert run_cli_in(root, ["fit", "--config", "tiny.yaml"]) == 0  # the same command again: not refused
    runs = root / "out" / "tiny"  # the logger's name in tiny.yaml
    assert sorted(p.name for p in runs.glob("version_*/checkpoints/last.ckpt")) == ["last.ckpt"] * 2
    first = (runs / "version_0/checkpoints/last.ckpt").read_bytes()
    assert run_cli_in(root, ["fit", "--config", "tiny.yaml", "--ckpt_path", "last", "--trainer.max_steps", "3"]) == 0
    continued = torch.load(runs / "version_2/checkpoints/last.ckpt", weights_only=False)
    assert continued["global_step"] == 3  # from version_1's step 2
    assert (runs / "version_0/checkpoints/last.ckpt").read_bytes() == first  # nothing overwritten
    assert run_cli_in(root, ["fit", "--config", "tiny.yaml", "--run_name", "other"]) == 0
    assert (root / "out/other/version_0/checkpoints/last.ckpt").is_file()


def test_run_name_defaults_to_the_config_stem():
    from gpt_lightning.train.runs import default_run_name

    assert default_run_name(["configs/shakespeare_char_cpu.yaml"]) == "shakespeare_char_cpu"
    assert default_run_name([]) == "run" and default_run_name(None) == "run"


def test_run_name_and_the_logger_configured():
    from jsonargparse import Namespace

    from gpt_lightning.train.runs import apply_run_name

    tb = lambda name: Namespace(logger=Namespace(class_path="x", init_args=Namespace(save_dir="out", name=name)))  # noqa: E731
    config = tb("lightning_logs")  # a preset without a name of its own: the run name
    assert apply_run_name(config, "shakespeare_char_cpu", given=False) == ("out", "shakespeare_char_cpu")
    config = tb("mine")  # a name of the user's config stays, unless --run_name is given
    assert apply_run_name(config, "stem", given=False) == ("out", "mine")
    assert apply_run_name(config, "exp1", given=True) == ("out", "exp1") and config.logger.init_args.name == "exp1"
    assert apply_run_name(Namespace(logger=False), "exp1", given=True) is None
    config = Namespace(logger=None, default_root_dir="runs")  # no logger: Lightning's default unless named
    assert apply_run_name(config, "stem", given=False) is None and config.logger is None
    assert apply_run_name(config, "exp1", given=True) == ("runs", "exp1")
    assert config.logger.class_path == "lightning.pytorch.loggers.TensorBoardLogger"
