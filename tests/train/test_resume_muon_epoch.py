"""Exact resume with Muon and with the epoch sampler, the check tests/train/test_resume.py makes for AdamW.

A straight run of the tiny config (8 steps, accumulation 2, plus gradient clipping 1.0) must equal 3 steps + a
resume: per-step train losses to 1e-6 and the final weights. The corpus is small (49 windows of 16 tokens per
epoch), so the epoch sampler's run crosses epoch borders, and the resume happens mid-epoch.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from helpers import (
    TINY,
    assert_close,
    csv_metrics,
    make_data,
    new_root,
    poison_step,
    run_cli_in_process,
    synthetic_text,
    train_losses,
    versions,
)

STEPS, ACCUM = TINY["trainer"]["max_steps"], TINY["trainer"]["accumulate_grad_batches"]
BATCH, BLOCK = TINY["data"]["batch_size"], TINY["data"]["block_size"]
TRAIN_TOKENS = 810  # of synthetic_text(900) with val_fraction 0.1
WINDOWS = TRAIN_TOKENS // BLOCK - 1  # per epoch
CLIP = {"trainer.gradient_clip_val": 1.0}
CASES = {
    "muon": {"model.optimizer": "muon", "model.muon_lr": 0.02},
    "epoch": {"data.sampling": "epoch"},
    "muon-epoch": {"model.optimizer": "muon", "model.muon_lr": 0.02, "data.sampling": "epoch"},
}


@pytest.fixture(scope="module")
def small_data_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("data")
    make_data(root, text=synthetic_text(900))
    return root


def final_state(root: Path) -> dict:
    ckpt = torch.load(root / "out/ckpt/last.ckpt", weights_only=False)
    assert ckpt["global_step"] == STEPS
    return ckpt["state_dict"]


@pytest.mark.slow  # a few seconds of Trainer run: left out of the fast loop, run in CI
@pytest.mark.parametrize("case", CASES)
def test_straight_run_equals_stop_and_resume(tmp_path, monkeypatch, small_data_root, case):
    straight = new_root(tmp_path / "straight", small_data_root, **CLIP, **CASES[case])
    monkeypatch.chdir(straight)
    assert run_cli_in_process(["fit", "--config", "tiny.yaml"]) == 0
    reference = train_losses(versions(straight)[0])
    metrics = csv_metrics(versions(straight)[0])

    root = new_root(tmp_path / "resumed", small_data_root, **CLIP, **CASES[case])
    monkeypatch.chdir(root)
    assert run_cli_in_process(["fit", "--config", "tiny.yaml", "--trainer.max_steps", "3"]) == 0
    stopped = torch.load("out/ckpt/last.ckpt", weights_only=False)
    state_keys = {k for s in stopped["optimizer_states"][0]["state"].values() for k in s}
    if "muon" in case:  # both optimizers' states are in the checkpoint
        assert {"exp_avg", "exp_avg_sq", "momentum_buffer"} <= state_keys
    if "epoch" in case:  # mid-epoch: 3 steps x ACCUM micro-batches x BATCH windows
        epoch, index = divmod(3 * ACCUM * BATCH, WINDOWS)
        assert index > 0
        assert stopped["TokenBinDataModule"]["sampling"] == {"kind": "epoch", "epoch": epoch, "index": index}
    assert run_cli_in_process(["fit", "--config", "tiny.yaml", "--ckpt_path", "last"]) == 0

    losses = {}
    for v in versions(root):
        losses.update(train_losses(v))
    assert sorted(losses) == sorted(reference) == list(range(1, STEPS + 1))  # logged at the steps done
    for step, loss in losses.items():
        assert_close(loss, reference[step])
    resumed = final_state(root)
    for name, tensor in final_state(straight).items():
        torch.testing.assert_close(resumed[name], tensor, rtol=0, atol=1e-6)

    # passes over the train split, logged as train/epoch: exact for the epoch sampler, tokens seen for random
    seen = STEPS * ACCUM * BATCH
    expected = seen / WINDOWS if "epoch" in case else seen * BLOCK / TRAIN_TOKENS
    assert_close(metrics[STEPS]["train/epoch"], expected)


def test_muon_skips_a_nonfinite_step(tmp_path, monkeypatch, small_data_root):
    root = new_root(tmp_path, small_data_root, **CLIP, **CASES["muon"])
    monkeypatch.chdir(root)
    poison_step(monkeypatch, 2)
    with pytest.warns(Warning, match="Skipped optimizer step 2"):
        assert run_cli_in_process(["fit", "--config", "tiny.yaml", "--model.on_nonfinite_loss", "skip"]) == 0
    losses = train_losses(versions(root)[0])
    # the poisoned step (index 2) is logged at 3, the steps done
    assert losses[3] != losses[3] and all(losses[s] == losses[s] for s in losses if s != 3)
    assert all(torch.isfinite(t).all() for t in final_state(root).values())
