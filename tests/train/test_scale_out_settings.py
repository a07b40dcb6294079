"""Scaling out without launching ranks: --data.tokens_per_step derives the accumulation (or says why it cannot),
the scale-out presets keep the recipe's tokens per step, validation batches shard over ranks, and only rank 0
prepares data. The two-rank DDP run itself: e2e/test_ddp.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from gpt_lightning.cli.fit import GPTLightningCLI
from gpt_lightning.data.bins import read_meta
from gpt_lightning.data.datamodule import ValWindows
from gpt_lightning.data.prepare import prepare
from helpers import REPO, TINY, TINY_OVER_PRESET, TINY_TEXT

B, T = TINY["data"]["batch_size"], TINY["data"]["block_size"]


def fit_args(data_dir: Path, out: Path, **extra: str) -> list[str]:
    args = [*TINY_OVER_PRESET, f"--data.data_dir={data_dir}", f"--checkpoint.dirpath={out / 'checkpoints'}"]
    return [*args, "--trainer.logger=false", *(x for kv in extra.items() for x in kv)]


def cli(data_dir: Path, out: Path, **extra: str) -> GPTLightningCLI:
    return GPTLightningCLI(args=fit_args(data_dir, out, **extra), run=False)


def test_tokens_per_step_derives_accumulation_and_validation_interval(char_data, tmp_path, capsys):
    c = cli(char_data, tmp_path, **{"--data.tokens_per_step": str(B * T * 3), "--val_every_n_steps": "5"})
    assert c.trainer.accumulate_grad_batches == 3
    assert c.trainer.val_check_interval == 15  # Lightning counts batches: 5 steps x 3 micro-batches


@pytest.mark.parametrize(
    "extra, message",
    [
        ({"--data.tokens_per_step": str(B * T * 3 + 1)}, "is not a multiple of"),
        ({"--data.tokens_per_step": str(B * T // 2)}, "is not a multiple of"),
        ({"--data.tokens_per_step": str(B * T * 3), "--trainer.accumulate_grad_batches": "2"}, "contradicts"),
    ],
)
def test_tokens_per_step_errors(char_data, tmp_path, capsys, extra, message):
    from gpt_lightning.cli import main

    with pytest.raises(SystemExit) as exc:
        main(["fit", *fit_args(char_data, tmp_path, **extra)])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert any(line.startswith("error: ") and message in line for line in err.splitlines()), err


def preset(name: str, capsys, *overrides: str) -> dict:
    import yaml

    from gpt_lightning.cli import main

    with pytest.raises(SystemExit) as exc:
        main(["fit", "--config", str(REPO / "configs" / name), *overrides, "--print_config"])
    assert exc.value.code in (0, None)
    return yaml.safe_load(capsys.readouterr().out)


@pytest.mark.parametrize(
    "name, variants",
    [
        # (devices, nodes, batch_size) -> accumulation: the preset, then the README's ways to scale it, which
        # all keep the recipe's 491,520 tokens per step
        ("gpt2_124m.yaml", {(8, 1, 12): 5, (1, 1, 12): 40, (8, 2, 6): 5, (8, 4, 15): 1}),
        ("gpt2_large_fsdp.yaml", {(8, 1, 6): 10}),
    ],
)
def test_presets_parse_and_their_global_batch_divides(capsys, name, variants):
    import types

    from gpt_lightning.cli.fit import set_tokens_per_step

    cfg = preset(name, capsys)
    preset_shape = (cfg["trainer"]["devices"], cfg["trainer"]["num_nodes"], cfg["data"]["batch_size"])
    assert preset_shape == next(iter(variants))
    for (devices, nodes, batch_size), accumulation in variants.items():
        trainer = types.SimpleNamespace(num_devices=devices, num_nodes=nodes, accumulate_grad_batches=1)
        data = types.SimpleNamespace(**{**cfg["data"], "batch_size": batch_size})
        assert set_tokens_per_step(trainer, data) == 491_520
        assert trainer.accumulate_grad_batches == accumulation
    if "fsdp" in name:
        strategy = cfg["trainer"]["strategy"]
        assert strategy["class_path"] == "lightning.pytorch.strategies.FSDPStrategy"
        assert strategy["init_args"]["auto_wrap_policy"] == ["gpt_lightning.model.Block"]


def test_fewer_val_batches_than_ranks_is_a_user_error(char_data):
    from gpt_lightning.errors import UserError

    with pytest.raises(UserError, match="val_batches 3 is less than the 4 ranks"):
        ValWindows(char_data, read_meta(char_data), B, T, num_batches=3, rank=3, world_size=4)


@pytest.mark.slow  # waits on a polling interval: left out of the fast loop, run in CI
def test_ranks_started_together_wait_for_rank_zero_to_prepare(tmp_path, monkeypatch):
    """Under torchrun or SLURM every rank starts the prepare step at once: only rank 0 may prepare."""
    import threading

    from lightning.fabric.utilities.rank_zero import rank_zero_only

    from gpt_lightning.data import prepare as prepare_module
    from gpt_lightning.data.datamodule import TokenBinDataModule

    (tmp_path / "corpus.txt").write_text(TINY_TEXT)
    monkeypatch.setattr(rank_zero_only, "rank", 1)
    monkeypatch.setattr(prepare_module, "prepare", lambda *a, **k: pytest.fail("a rank other than 0 prepared"))
    rank0 = threading.Timer(1.0, prepare, (str(tmp_path / "corpus.txt"), "char", tmp_path / "bins"))
    rank0.start()
    dm = TokenBinDataModule(data_dir=tmp_path / "bins", source=str(tmp_path / "corpus.txt"))
    try:
        dm.prepare_if_missing()  # waits for rank 0's meta.json
        assert dm.vocab_size == read_meta(tmp_path / "bins")["vocab_size"]
    finally:
        rank0.join()
