"""Multi-process training on CPU: two DDP ranks over gloo, launched by the real CLI.

One tiny run (2 ranks x micro-batch 2 x accumulation 2, the accumulation derived from --data.tokens_per_step)
is recorded by tests/probes.py (DDPProbe) and checked against a single process doing the same arithmetic by hand:
- each rank draws its own windows, and they are the documented (seed, rank, k) stream;
- the averaged gradient and the AdamW update equal those of one process on the 2*2*2 = 8 windows at once
  (fp32; only the order of summation differs, so rtol 1e-4, atol 1e-6);
- the logged val/loss is the mean over all validation batches, not one rank's share (5 batches: 3 + 2).
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

from gpt_lightning.data.bins import read_meta
from gpt_lightning.data.datamodule import TrainWindows, ValWindows
from gpt_lightning.data.prepare import prepare
from gpt_lightning.model import GPT, GPTConfig
from gpt_lightning.train.module import GPTLightningModule
from helpers import run_cli_subprocess

pytestmark = pytest.mark.slow

TOL = dict(rtol=1e-4, atol=1e-6)
MODEL = dict(
    n_layer=2,
    n_head=2,
    n_embd=32,
    dropout=0.0,
    bias=True,
    learning_rate=1e-2,
    min_lr=1e-3,
    warmup_steps=1,
    lr_decay_steps=10,
    weight_decay=0.1,
    beta1=0.9,
    beta2=0.95,
)
B, T, WORLD, ACCUM, SEED, VAL_BATCHES, STEPS = 2, 16, 2, 2, 1234, 5, 2


def corpus_text() -> str:
    """Generated, so that the test trains on the same text wherever the checkout sits (with or without ../shared)."""
    rng = np.random.default_rng(0)
    words = ["the", "king", "and", "queen", "of", "rome", "speak", "now", "my", "lord"]
    return " ".join(rng.choice(words, size=10_000)) + "\n"


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("ddp_data")
    (root / "corpus.txt").write_text(corpus_text())
    prepare(str(root / "corpus.txt"), "char", root / "bins", val_fraction=0.2)
    return root / "bins"


def fit_args(data_dir: Path, out: Path, **extra: str) -> list[str]:
    args = {
        "--seed_everything": "7",
        "--data.data_dir": str(data_dir),
        "--data.block_size": str(T),
        "--data.batch_size": str(B),
        "--data.val_batches": str(VAL_BATCHES),
        "--data.seed": str(SEED),
        "--trainer.max_steps": str(STEPS),
        "--trainer.accelerator": "cpu",
        "--trainer.precision": "32-true",
        "--trainer.logger": "false",
        "--trainer.enable_progress_bar": "false",
        "--trainer.enable_model_summary": "false",
        "--checkpoint.dirpath": str(out / "checkpoints"),
        "--model.compile": "false",
        **{f"--model.{k}": str(v) for k, v in MODEL.items()},
        **extra,
    }
    return [x for kv in args.items() for x in kv]


def launch_ddp(data_dir: Path, out: Path, **options: str) -> tuple[subprocess.CompletedProcess, list[dict]]:
    """Two CPU ranks, launched the way a user launches them (one command, Lightning starts the second rank), with
    DDPProbe's records of each rank."""
    probe = '[{"class_path": "probes.DDPProbe", "init_args": {"out_dir": "%s"}}]' % (out / "probe")
    args = fit_args(
        data_dir,
        out,
        **{
            "--trainer.strategy": "ddp",
            "--trainer.devices": str(WORLD),
            "--data.tokens_per_step": str(B * T * WORLD * ACCUM),
            "--val_every_n_steps": str(STEPS),
            "--trainer.callbacks": probe,
            **options,
        },
    )
    proc = run_cli_subprocess(["fit", *args], cwd=out, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc, [torch.load(out / "probe" / f"rank{r}.pt", weights_only=False) for r in range(WORLD)]


@pytest.fixture(scope="module")
def ddp_run(data_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("ddp_run")
    proc, records = launch_ddp(data_dir, out)
    return proc, records, out


def reference_module(data_dir: Path) -> GPTLightningModule:
    return GPTLightningModule(vocab_size=read_meta(data_dir)["vocab_size"], block_size=T, compile=False, **MODEL)


def test_ddp_run_through_cli(ddp_run):
    proc, records, out = ddp_run
    assert (
        f"{B} batch x {T} block x {WORLD} device(s) x 1 node(s) x {ACCUM} accumulation"
        f" (derived from tokens_per_step) = {B * T * WORLD * ACCUM}" in proc.stdout + proc.stderr
    )
    for rec in records:
        assert rec["world_size"] == WORLD and rec["accumulate"] == ACCUM
        assert len(rec["batches"]) == STEPS * ACCUM and len(rec["grads"]) == STEPS
        # --val_every_n_steps counts optimizer steps, also with the derived accumulation
        assert [v["step"] for v in rec["val"] if not v["sanity"]] == [STEPS]
    # DDP kept the replicas identical
    for name, p in records[0]["final"].items():
        torch.testing.assert_close(p, records[1]["final"][name], rtol=0, atol=0)
    assert (out / "checkpoints" / "last.ckpt").is_file()


def test_each_rank_draws_its_own_reproducible_windows(ddp_run, data_dir):
    _, records, _ = ddp_run
    meta = read_meta(data_dir)
    for rank, rec in enumerate(records):
        stream = TrainWindows(data_dir, meta, B, T, SEED, rank)
        expected = iter(stream)
        for x, y in rec["batches"]:
            ex, ey = next(expected)
            assert torch.equal(x, ex) and torch.equal(y, ey)
    seen = [{tuple(row.tolist()) for x, _ in rec["batches"] for row in x} for rec in records]
    assert not seen[0] & seen[1], "two ranks trained on the same windows"


def test_gradient_and_update_equal_one_process_on_the_global_batch(ddp_run, data_dir):
    _, records, _ = ddp_run
    r0, r1 = records
    for name, g in r0["grads"][0].items():  # the all-reduce left the same gradient on both ranks
        torch.testing.assert_close(g, r1["grads"][0][name], **TOL)

    module = reference_module(data_dir)
    module.model.load_state_dict(r0["init"])
    optimizers = module.configure_optimizers()
    optimizer, scheduler = optimizers["optimizer"], optimizers["lr_scheduler"]["scheduler"]
    # step 0's global batch: micro-batches 0..ACCUM-1 of every rank, as one batch of B*ACCUM*WORLD windows
    x = torch.cat([x for rec in records for x, _ in rec["batches"][:ACCUM]])
    y = torch.cat([y for rec in records for _, y in rec["batches"][:ACCUM]])
    assert x.shape == (B * ACCUM * WORLD, T)
    _, loss = module.model(x, y)
    loss.backward()
    for name, p in module.model.named_parameters():
        torch.testing.assert_close(p.grad, r0["grads"][0][name], **TOL, msg=lambda m, name=name: f"{name}: {m}")
    # AdamW's first update (bias-corrected m = g, sqrt(v) = |g|) is lr * g / (|g| + eps), about +-lr: its slope
    # lr * eps / (|g| + eps)**2 turns a gradient difference d (summation order: one batch here, an all-reduce of
    # micro-batch sums there; within TOL) into an update difference of up to lr * eps * d / g**2. With lr 1e-2,
    # eps 1e-8 and d <= 1e-6 that is below TOL's atol where |g| >= 1e-4; where |g| is near eps the update swings
    # anywhere in [-lr, lr] and is not defined by the gradient to any tolerance, so it is only checked to be that.
    lr, eps = optimizer.param_groups[0]["lr"], optimizer.param_groups[0]["eps"]
    grads = {name: p.grad.detach().clone() for name, p in module.model.named_parameters()}
    before = {name: p.detach().clone() for name, p in module.model.named_parameters()}
    optimizer.step()
    scheduler.step()
    for name, p in module.model.named_parameters():  # the weights after the first update
        ddp = r0["params_before_step"][1][name]
        defined = grads[name].abs() >= 1e-4
        torch.testing.assert_close(p.detach()[defined], ddp[defined], **TOL, msg=lambda m, name=name: f"{name}: {m}")
        bound = lr * (1 + MODEL["weight_decay"] * before[name].abs()) + 1e-6  # AdamW's step plus decoupled decay
        assert ((ddp - before[name]).abs() <= bound).all(), f"{name}: an update larger than AdamW's"
    assert lr * eps * 1e-6 / 1e-4**2 < TOL["atol"]


def test_validation_loss_is_reduced_over_ranks(ddp_run, data_dir):
    _, records, _ = ddp_run
    meta = read_meta(data_dir)
    counts = [rec["val"][-1]["local_count"] for rec in records]
    assert counts == [3, 2]  # 5 batches over 2 ranks, uneven on purpose
    logged = [rec["val"][-1]["logged"] for rec in records]
    assert logged[0] == pytest.approx(logged[1], rel=1e-6)

    model = GPT(GPTConfig(vocab_size=meta["vocab_size"], block_size=T, n_layer=2, n_head=2, n_embd=32))
    model.load_state_dict(records[0]["val"][-1]["params"], strict=False)
    model.eval()
    with torch.no_grad():
        losses = [model(x, y)[1].item() for x, y in ValWindows(data_dir, meta, B, T, VAL_BATCHES, 0, 1)]
    assert logged[0] == pytest.approx(np.mean(losses), rel=1e-5)
    local = [rec["val"][-1]["local_sum"] / rec["val"][-1]["local_count"] for rec in records]
    assert all(abs(m - logged[0]) > 1e-6 for m in local), "the logged value is one rank's share, not the mean"


# the modern block (every option that changes the network, the untied lm_head included) with Muon, over the same two
# gloo ranks: the replicas stay identical and the averaged gradient is one process's on the global batch
MODERN = dict(rope=True, norm="rmsnorm", qk_norm=True, mlp="swiglu", tie_embeddings=False, logit_softcap=30.0)


def test_ddp_with_the_modern_block_and_muon(data_dir, tmp_path):
    out = tmp_path / "modern"
    out.mkdir()
    extra = {f"--model.{k}": str(v).lower() if isinstance(v, bool) else str(v) for k, v in MODERN.items()}
    _, (r0, r1) = launch_ddp(data_dir, out, **{"--model.optimizer": "muon", **extra})
    assert "lm_head.weight" in r0["final"] and "transformer.wpe.weight" not in r0["final"]
    for name, p in r0["final"].items():
        torch.testing.assert_close(p, r1["final"][name], rtol=0, atol=0)

    module = GPTLightningModule(
        vocab_size=read_meta(data_dir)["vocab_size"], block_size=T, compile=False, **MODEL, **MODERN
    )
    module.model.load_state_dict(r0["init"])
    x = torch.cat([x for rec in (r0, r1) for x, _ in rec["batches"][:ACCUM]])
    y = torch.cat([y for rec in (r0, r1) for _, y in rec["batches"][:ACCUM]])
    module.model(x, y)[1].backward()
    for name, p in module.model.named_parameters():
        torch.testing.assert_close(p.grad, r0["grads"][0][name], **TOL, msg=lambda m, name=name: f"{name}: {m}")
