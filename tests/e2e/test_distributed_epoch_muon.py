"""Two DDP ranks over gloo, launched by the real CLI, with Muon and the epoch sampler.

Recorded by tests/probes.py (DDPProbe): each rank's batches are its share of the documented epoch stream
(data/sampling.py), the two ranks never train on the same window within an epoch, and Muon under DDP keeps the
replicas identical (it orthogonalises the all-reduced gradient, the same on both ranks).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from gpt_lightning.data.bins import read_meta
from gpt_lightning.data.datamodule import gather_windows
from gpt_lightning.data.prepare import prepare
from gpt_lightning.data.sampling import EpochSampler

ROOT = Path(__file__).resolve().parents[2]
B, T, WORLD, ACCUM, STEPS, SEED = 2, 16, 2, 2, 4, 99

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def ddp_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("ddp_epoch")
    rng = np.random.default_rng(0)
    words = ["the", "king", "and", "queen", "of", "rome", "speak", "now", "my", "lord"]
    # 306 train tokens: 18 windows per epoch, so 4 steps x 2 micro-batches x 2 ranks x 2 windows cross an epoch
    (root / "corpus.txt").write_text(" ".join(rng.choice(words, size=80))[:340])
    prepare(str(root / "corpus.txt"), "char", root / "bins", val_fraction=0.1)
    probe = '[{"class_path": "probes.DDPProbe", "init_args": {"out_dir": "%s"}}]' % (root / "probe")
    args = [
        "--seed_everything",
        "7",
        "--data.data_dir",
        str(root / "bins"),
        "--data.block_size",
        str(T),
        "--data.batch_size",
        str(B),
        "--data.val_batches",
        "2",
        "--data.seed",
        str(SEED),
        "--data.sampling",
        "epoch",
        "--model.optimizer",
        "muon",
        "--model.n_layer",
        "2",
        "--model.n_head",
        "2",
        "--model.n_embd",
        "32",
        "--model.compile",
        "false",
        "--model.warmup_steps",
        "1",
        "--trainer.max_steps",
        str(STEPS),
        "--trainer.accumulate_grad_batches",
        str(ACCUM),
        "--trainer.gradient_clip_val",
        "1.0",
        "--trainer.accelerator",
        "cpu",
        "--trainer.strategy",
        "ddp",
        "--trainer.devices",
        str(WORLD),
        "--trainer.precision",
        "32-true",
        "--trainer.logger",
        "false",
        "--trainer.enable_progress_bar",
        "false",
        "--trainer.enable_model_summary",
        "false",
        "--checkpoint.dirpath",
        str(root / "checkpoints"),
        "--trainer.callbacks",
        probe,
    ]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), str(ROOT / "tests")]))
    proc = subprocess.run(
        [sys.executable, "-m", "gpt_lightning", "fit", *args],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    records = [torch.load(root / "probe" / f"rank{r}.pt", weights_only=False) for r in range(WORLD)]
    return proc, records, root / "bins"


def test_ranks_train_on_disjoint_windows_of_the_epoch_stream(ddp_run):
    proc, records, bins = ddp_run
    assert "Muon: 8 hidden-matrix tensors" in proc.stdout + proc.stderr
    meta = read_meta(bins)
    tokens = np.fromfile(bins / "train.bin", dtype=meta["dtype"])
    seen: dict[tuple[int, int], int] = {}  # (epoch, window start) -> rank
    for rank, rec in enumerate(records):
        sampler = EpochSampler(meta["train_tokens"], T, B, SEED, rank, WORLD)
        assert len(rec["batches"]) == STEPS * ACCUM
        for k, (x, y) in enumerate(rec["batches"]):
            starts = sampler.batch_starts(k, len(tokens))
            ex, ey = gather_windows(tokens, starts, T)
            assert torch.equal(x, ex) and torch.equal(y, ey)
            for j, start in enumerate(starts):
                key = ((sampler.first_window(k) + j) // sampler.n_windows, int(start))
                assert key not in seen, f"window {key} trained on by ranks {seen[key]} and {rank} in one epoch"
                seen[key] = rank
    assert {e for e, _ in seen} == {0, 1}  # the run crossed an epoch border


def test_muon_keeps_the_ddp_replicas_identical(ddp_run):
    _, records, _ = ddp_run
    for name, p in records[0]["final"].items():
        torch.testing.assert_close(p, records[1]["final"][name], rtol=0, atol=0)
        assert not torch.equal(p, records[0]["init"][name]) or p.dim() == 1, f"{name} was not trained"
