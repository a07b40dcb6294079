"""Exact resume, atomic checkpoints and non-finite losses, through the real CLI in this process (signals to a
real subprocess: e2e/test_signals.py).

The reference is one straight 8-step run (accumulation 2, so 16 micro-batches); every interrupted or resumed
run must reproduce its per-step train losses (to 1e-6) and its final weights. With dropout, too: the module
seeds the dropout RNG per micro-batch, since Lightning's checkpoints do not hold the torch RNG state.
"""

from __future__ import annotations

import pytest
import torch

from helpers import (
    TINY,
    assert_close,
    assert_matches_reference,
    csv_metrics,
    new_root,
    poison_step,
    resumed_losses,
    run_cli_in_process,
    straight_run,
    train_losses,
    versions,
)

STEPS = TINY["trainer"]["max_steps"]


# ------------------------------------------------------------ exact resume


@pytest.mark.slow  # several fits
def test_stop_and_resume_is_exact(tmp_path, monkeypatch, data_root, reference, capsys):
    root = new_root(tmp_path, data_root)
    monkeypatch.chdir(root)
    # `--ckpt_path last` with nothing to resume starts a new run (what a requeue script needs on its first go)
    assert run_cli_in_process(["fit", "--config", "tiny.yaml", "--ckpt_path", "last", "--trainer.max_steps", "3"]) == 0
    assert "no out/ckpt/last.ckpt yet" in capsys.readouterr().err
    stopped = torch.load("out/ckpt/last.ckpt", weights_only=False)
    assert stopped["global_step"] == 3
    assert stopped["TokenBinDataModule"]["batches_consumed"] == 6  # 3 steps x 2 micro-batches
    # a new max_steps on the command line is honoured
    assert run_cli_in_process(["fit", "--config", "tiny.yaml", "--ckpt_path", "last"]) == 0
    first, second = (train_losses(v) for v in versions(root))
    # logged at the optimizer steps done, as the checkpoints' names count them
    assert sorted(first) == [1, 2, 3] and sorted(second) == list(range(4, STEPS + 1))
    assert_matches_reference(reference, {**first, **second}, root / "out/ckpt/last.ckpt")
    lrs = {s: m["train/lr"] for v in versions(root) for s, m in csv_metrics(v).items() if "train/lr" in m}
    for step, lr in lrs.items():
        assert_close(lr, reference["lrs"][step], 1e-12)


@pytest.mark.slow  # several fits
def test_stop_and_resume_is_exact_with_dropout(tmp_path, monkeypatch, data_root):
    reference = straight_run(new_root(tmp_path / "straight", data_root, **{"model.dropout": 0.2}))
    root = new_root(tmp_path / "resumed", data_root, **{"model.dropout": 0.2})
    monkeypatch.chdir(root)
    assert run_cli_in_process(["fit", "--config", "tiny.yaml", "--trainer.max_steps", "3"]) == 0
    assert run_cli_in_process(["fit", "--config", "tiny.yaml", "--ckpt_path", "last"]) == 0
    assert_matches_reference(reference, resumed_losses(root), root / "out/ckpt/last.ckpt")


@pytest.mark.slow  # several fits
def test_resume_honours_new_learning_rate(tmp_path, monkeypatch, data_root):
    from gpt_lightning.train.schedules import lr_at

    root = new_root(tmp_path, data_root)
    monkeypatch.chdir(root)
    assert run_cli_in_process(["fit", "--config", "tiny.yaml", "--trainer.max_steps", "3"]) == 0
    path = "out/ckpt/last.ckpt"
    args = [
        "fit",
        "--config",
        "tiny.yaml",
        "--ckpt_path",
        path,
        "--model.learning_rate",
        "5e-3",
        "--trainer.max_steps",
        "5",
    ]
    assert run_cli_in_process(args) == 0
    lrs = {s: m["train/lr"] for s, m in csv_metrics(versions(root)[1]).items() if "train/lr" in m}
    assert sorted(lrs) == [4, 5]  # steps done: the LR of the 4th step (index 3) is logged at 4
    for step, lr in lrs.items():  # the schedule runs over the new peak learning rate
        # float32, as self.log and TensorBoard store scalars
        assert lr == pytest.approx(lr_at(step - 1, 5e-3, warmup_steps=2, lr_decay_steps=8, min_lr=1e-3), rel=1e-6)
    ckpt = torch.load(path, weights_only=False)
    assert ckpt["hyper_parameters"]["learning_rate"] == 5e-3
    assert [g["lr"] for g in ckpt["optimizer_states"][0]["param_groups"]] == [
        pytest.approx(lr_at(5, 5e-3, 2, 8, 1e-3))
    ] * 2  # the next step's


@pytest.mark.slow  # several fits
def test_checkpoint_hyperparameters_are_defaults(tmp_path, monkeypatch, data_root):
    """Without --config, the checkpoint's model (and block size) is rebuilt; options given still win; a
    pretrained init (here one that does not even exist) is not loaded, the checkpoint's weights replace it."""
    root = new_root(tmp_path, data_root)
    monkeypatch.chdir(root)
    assert run_cli_in_process(["fit", "--config", "tiny.yaml", "--trainer.max_steps", "2"]) == 0
    args = [
        "fit",
        "--ckpt_path",
        "out/ckpt/last.ckpt",
        "--checkpoint.dirpath",
        "out/ckpt",
        "--data.data_dir",
        "data/tiny",
        "--trainer.logger",
        "false",
        "--trainer.max_steps",
        "3",
        "--model.warmup_steps",
        "5",
        "--model.init_from",
        "nowhere/gpt2",
    ]
    assert run_cli_in_process(args) == 0
    hp = torch.load("out/ckpt/last.ckpt", weights_only=False)["hyper_parameters"]
    assert (hp["n_layer"], hp["n_embd"], hp["block_size"], hp["learning_rate"]) == (2, 32, 16, 1e-2)
    assert hp["warmup_steps"] == 5


# ------------------------------------------------------------ atomic checkpoint files


def test_atomic_checkpoint_io_keeps_old_file_when_a_save_fails(tmp_path, monkeypatch):
    from gpt_lightning.train.safety import AtomicCheckpointIO

    io = AtomicCheckpointIO()
    path = tmp_path / "last.ckpt"
    io.save_checkpoint({"global_step": 1, "w": torch.ones(3)}, path)

    def full_disk(obj, f, *args, **kwargs):
        f.write(b"partial")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", full_disk)
    from gpt_lightning.errors import UserError

    with pytest.raises(UserError, match="The disk is full: could not write .*last.ckpt"):
        io.save_checkpoint({"global_step": 2, "w": torch.zeros(3)}, path)
    monkeypatch.undo()
    assert torch.load(path)["global_step"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]


def test_stale_temporary_checkpoints_are_removed(tmp_path):
    """The cleaner `fit` runs on --checkpoint.dirpath removes a killed save's temporary (named by files.py)."""
    import socket
    import subprocess
    import sys

    from gpt_lightning.files import remove_stale_temporaries

    dead = int(
        subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True).stdout
    )
    (tmp_path / f".last.ckpt.tmp-{dead}-{socket.gethostname()}").write_bytes(b"half a checkpoint")
    (tmp_path / "last.ckpt").write_bytes(b"kept")
    remove_stale_temporaries(tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]


@pytest.mark.parametrize("user_plugin", [False, True], ids=["default", "user-checkpoint-io"])
def test_cli_installs_atomic_checkpoint_io_unless_user_has_one(tmp_path, monkeypatch, data_root, user_plugin):
    from lightning.pytorch.plugins.io import TorchCheckpointIO

    from gpt_lightning.cli.fit import GPTLightningCLI
    from gpt_lightning.train.safety import AtomicCheckpointIO

    monkeypatch.chdir(new_root(tmp_path, data_root))
    args = ["--config", "tiny.yaml"]
    if user_plugin:
        args += ["--trainer.plugins", "lightning.pytorch.plugins.io.TorchCheckpointIO"]
    io = GPTLightningCLI(args=args, run=False).trainer.strategy.checkpoint_io
    assert type(io) is (TorchCheckpointIO if user_plugin else AtomicCheckpointIO)


# ------------------------------------------------------------ non-finite losses


@pytest.mark.slow  # several fits
def test_nonfinite_loss_stops_naming_the_step(tmp_path, monkeypatch, data_root, capsys):
    root = new_root(tmp_path, data_root)
    monkeypatch.chdir(root)
    poison_step(monkeypatch, 5)
    assert run_cli_in_process(["fit", "--config", "tiny.yaml"]) == 2
    err = capsys.readouterr().err
    assert "error: The training loss became NaN or infinite at step 5;" in err
    assert "Traceback" not in err
    ckpt = torch.load(root / "out/ckpt/last.ckpt", weights_only=False)
    assert ckpt["global_step"] == 4  # the last good periodic checkpoint, not replaced
    assert all(torch.isfinite(t).all() for t in ckpt["state_dict"].values())


@pytest.mark.parametrize(
    "every, message",
    [(2, "The model's weights are NaN or infinite at step 4"), (100, "The validation loss is nan at step 4")],
    ids=["periodic-save", "validation"],
)
def test_nan_model_is_never_saved_as_best_or_last(tmp_path, monkeypatch, data_root, capsys, every, message):
    from gpt_lightning.train.module import GPTLightningModule

    root = new_root(tmp_path, data_root, **{"last_checkpoint.every_n_train_steps": every})
    monkeypatch.chdir(root)
    original = GPTLightningModule.on_before_optimizer_step

    def corrupt_at_step_3(self, optimizer):  # the update of step 3 makes the weights NaN; its loss was finite
        original(self, optimizer)
        if self.global_step == 3:
            for p in self.parameters():
                p.grad = torch.full_like(p, torch.nan)

    monkeypatch.setattr(GPTLightningModule, "on_before_optimizer_step", corrupt_at_step_3)
    assert run_cli_in_process(["fit", "--config", "tiny.yaml"]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not list((root / "out/ckpt").glob("best*.ckpt"))  # the first validation would have made it the best
    for path in (root / "out/ckpt").glob("*.ckpt"):
        sd = torch.load(path, weights_only=False)["state_dict"]
        assert all(torch.isfinite(t).all() for t in sd.values())


@pytest.mark.slow  # several fits
def test_nonfinite_loss_skip(tmp_path, monkeypatch, data_root):
    root = new_root(tmp_path, data_root)
    monkeypatch.chdir(root)
    poison_step(monkeypatch, 2)
    with pytest.warns(Warning, match="Skipped optimizer step 2"):
        assert run_cli_in_process(["fit", "--config", "tiny.yaml", "--model.on_nonfinite_loss", "skip"]) == 0
    losses = train_losses(versions(root)[0])
    assert losses[3] != losses[3]  # NaN, logged as it was (at 3: the steps done, the skipped one included)
    assert all(losses[s] == losses[s] for s in losses if s != 3)
    ckpt = torch.load(root / "out/ckpt/last.ckpt", weights_only=False)
    assert ckpt["global_step"] == STEPS
    assert all(torch.isfinite(t).all() for t in ckpt["state_dict"].values())
