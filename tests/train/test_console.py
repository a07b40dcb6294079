"""What the terminal shows (train/console.py) in a real `fit`: without a TTY one plain line per logging step and per
validation, the start-up lines, and the end-of-run summary (also after a non-finite loss); train/loss as the mean
over the logging window; val/bpb from the bytes `prepare` recorded."""

from __future__ import annotations

import math
import re

import pytest

from helpers import csv_metrics, new_root, poison_step, run_cli_in, versions

STEP_LINE = re.compile(r"^step (\d+)/8: loss \d+\.\d{4}, lr \d\.\d\de-\d\d, [\d,]+ tokens/s, mfu -$", re.M)
VAL_LINE = re.compile(r"^step (\d+): val loss (\d+\.\d{4}), val bpb (\d+\.\d{4})$", re.M)


@pytest.fixture(scope="module")
def console_run(tmp_path_factory, data_root):
    """8 steps of 2 micro-batches, logging every 2, validating at 0, 4 and 8; stdout captured (not a TTY)."""
    overrides = {"trainer.log_every_n_steps": 2, "trainer.num_sanity_val_steps": -1}
    root = new_root(tmp_path_factory.mktemp("console"), data_root, **overrides)
    return root


def test_plain_lines_and_summary(console_run, capsys):
    assert run_cli_in(console_run, ["fit", "--config", "tiny.yaml"]) == 0
    out = capsys.readouterr().out
    assert [int(s) for s in STEP_LINE.findall(out)] == [2, 4, 6, 8]
    vals = VAL_LINE.findall(out)
    assert [int(s) for s, _, _ in vals] == [0, 4, 8]  # the step-0 validation included
    metrics = csv_metrics(versions(console_run)[0])
    for step, loss, bpb in vals:
        if int(step):  # (the CSV logger gets step 0's too; its row merges with nothing)
            assert f"{metrics[int(step)]['val/loss']:.4f}" == loss
            assert f"{metrics[int(step)]['val/bpb']:.4f}" == bpb
    assert "model: " in out and "M parameters (2 layers, 2 heads, 32 wide, block 16" in out
    assert "checkpoints: out/ckpt" in out
    assert "GPU available" not in out and "v_num" not in out and "Epoch 0" not in out
    summary = out[out.index("run finished at step 8/8") :]
    assert "steps:       8, 2,048 tokens" in summary  # 8 steps x 8 x 16 x 2
    best = min(vals, key=lambda v: float(v[1]))
    assert f"{best[1]}, bpb {best[2]} at step {best[0]} (best)" in summary
    assert "best ckpt:   out/ckpt/best-step" in summary and "last ckpt:   out/ckpt/last.ckpt" in summary
    assert "python -m gpt_lightning generate --ckpt_path out/ckpt/best-step" in summary


def test_train_loss_is_the_window_mean(tmp_path, data_root, monkeypatch):
    """train/loss at a logging step is the mean of every micro-batch loss since the previous one."""
    from gpt_lightning.model import GPT

    losses: list[float] = []
    forward = GPT.forward

    def recording_forward(self, idx, targets=None):
        logits, loss = forward(self, idx, targets)
        if self.training and loss is not None:
            losses.append(float(loss))
        return logits, loss

    monkeypatch.setattr(GPT, "forward", recording_forward)
    root = new_root(tmp_path, data_root, **{"trainer.log_every_n_steps": 3, "trainer.max_steps": 6})
    assert run_cli_in(root, ["fit", "--config", "tiny.yaml"]) == 0
    logged = {s: m["train/loss"] for s, m in csv_metrics(versions(root)[0]).items() if "train/loss" in m}
    assert sorted(logged) == [3, 6]
    assert len(losses) == 12  # 6 steps x 2 micro-batches
    assert math.isclose(logged[3], sum(losses[:6]) / 6, rel_tol=1e-5)
    assert math.isclose(logged[6], sum(losses[6:]) / 6, rel_tol=1e-5)


def test_summary_after_a_nonfinite_loss(tmp_path, data_root, monkeypatch, capsys):
    poison_step(monkeypatch, 3)
    root = new_root(tmp_path, data_root)
    assert run_cli_in(root, ["fit", "--config", "tiny.yaml"]) == 2
    captured = capsys.readouterr()
    assert "run stopped: the loss became NaN or infinite" in captured.out
    assert "became NaN or infinite at step 3" in captured.err
