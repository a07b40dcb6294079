"""HellaSwag in the training loop: `fit --eval.hellaswag_every_n_steps N` logs eval/hellaswag_acc(_norm) to
TensorBoard at optimizer steps, equal to scoring the saved model directly; char models are skipped with a note;
two DDP ranks add their counts up exactly (slow).
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from hellaswag_helpers import EXAMPLES, write_examples

from gpt_lightning.cli import main
from gpt_lightning.evaluation import hellaswag
from helpers import run_cli_subprocess


@pytest.fixture(scope="module")
def examples_file(tmp_path_factory) -> Path:
    return write_examples(tmp_path_factory.mktemp("hellaswag") / "hellaswag_val.jsonl")


def tensorboard_scalars(log_dir: Path) -> dict[str, list[tuple[int, float]]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(log_dir))
    events.Reload()
    return {tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]}


@pytest.fixture(scope="module")
def gpt2_data(tmp_path_factory):
    from gpt_lightning.data.prepare import prepare

    root = tmp_path_factory.mktemp("gpt2_data")
    (root / "corpus.txt").write_text(" ".join(text for ctx, endings, _ in EXAMPLES for text in (ctx, *endings)) * 20)
    prepare(str(root / "corpus.txt"), "gpt2", root / "data")
    return root / "data"


def fit_args(data: Path, out: Path, hellaswag_file: Path, **extra: str) -> list[str]:
    args = {
        "--data.data_dir": str(data),
        "--data.block_size": "16",
        "--data.batch_size": "4",
        "--data.val_batches": "2",
        "--model.n_layer": "2",
        "--model.n_head": "2",
        "--model.n_embd": "32",
        "--model.compile": "false",
        "--model.warmup_steps": "1",
        "--model.learning_rate": "1e-2",
        "--trainer.max_steps": "5",
        "--trainer.accelerator": "cpu",
        "--trainer.devices": "1",
        "--trainer.precision": "32-true",
        "--trainer.enable_progress_bar": "false",
        "--trainer.enable_model_summary": "false",
        "--trainer.limit_val_batches": "0",
        "--trainer.default_root_dir": str(out),
        "--checkpoint.dirpath": str(out / "ckpt"),
        "--sample.max_new_tokens": "0",
        "--eval.hellaswag_every_n_steps": "2",
        "--eval.hellaswag_path": str(hellaswag_file),
        **extra,
    }
    return [x for kv in args.items() for x in kv]


def final_model_score(ckpt: Path, hellaswag_file: Path, protocol: str = "completion") -> tuple[float, float]:
    from gpt_lightning.weights.load import load_checkpoint_model

    model, tokenizer = load_checkpoint_model(ckpt)
    examples = hellaswag.encode(tokenizer, hellaswag.read_examples(hellaswag_file, protocol=protocol), protocol)
    scores = hellaswag.score(model, examples, progress=False)
    correct, correct_norm, n = hellaswag.counts(scores)
    return correct / n, correct_norm / n


@pytest.mark.slow  # a fit with HellaSwag scoring
@pytest.mark.parametrize("protocol", ["completion", pytest.param("lm-eval", marks=pytest.mark.slow)])
def test_fit_logs_hellaswag_at_optimizer_steps(gpt2_data, examples_file, tmp_path, capsys, monkeypatch, protocol):
    from gpt_lightning.train.throughput import ThroughputLogger

    path = examples_file
    clock = []  # the throughput clock stops for each evaluation (validation is off here)
    monkeypatch.setattr(ThroughputLogger, "pause", lambda self, pl_module: clock.append("pause"))
    monkeypatch.setattr(ThroughputLogger, "resume", lambda self, pl_module: clock.append("resume"))
    extra = {"--trainer.accumulate_grad_batches": "2", "--eval.hellaswag_protocol": protocol}
    main(["fit", *fit_args(gpt2_data, tmp_path, path, **extra)])
    assert clock == ["pause", "resume"] * 3
    out = capsys.readouterr().out
    scalars = tensorboard_scalars(tmp_path / "lightning_logs" / "version_0")
    # every 2 optimizer steps (not micro-batches), and after the last (5th) step; logged at the optimizer steps
    # done, as train/loss and val/loss are
    assert [s for s, _ in scalars["eval/hellaswag_acc_norm"]] == [2, 4, 5]
    assert [s for s, _ in scalars["eval/hellaswag_acc"]] == [2, 4, 5]
    acc, acc_norm = final_model_score(tmp_path / "ckpt" / "last.ckpt", path, protocol)
    assert scalars["eval/hellaswag_acc"][-1][1] == pytest.approx(acc, abs=1e-6)
    assert scalars["eval/hellaswag_acc_norm"][-1][1] == pytest.approx(acc_norm, abs=1e-6)
    assert (
        f"step 5: hellaswag acc_norm {acc_norm:.4f}, acc {acc:.4f} ({len(EXAMPLES)} examples, {protocol} protocol"
        in out
    )


def test_fit_skips_hellaswag_for_a_char_model_with_a_note(char_data, examples_file, tmp_path, caplog):
    path = examples_file
    args = fit_args(char_data, tmp_path, path, **{"--trainer.max_steps": "2"})
    # rank_zero_info logs to Lightning's logger, whose stream handler keeps whichever stderr was current when
    # Lightning was first imported; caplog sees the record whatever the order the tests ran in
    with caplog.at_level(logging.INFO, logger="lightning.pytorch"):
        main(["fit", *args])
    assert "--eval.hellaswag_every_n_steps is skipped: HellaSwag needs a GPT-2-BPE model" in caplog.text
    assert "eval/hellaswag_acc_norm" not in tensorboard_scalars(tmp_path / "lightning_logs" / "version_0")


def test_fit_without_the_file_stops_before_the_first_step(gpt2_data, tmp_path, capsys):
    args = fit_args(gpt2_data, tmp_path, tmp_path / "nope.jsonl")
    with pytest.raises(SystemExit) as exc:
        main(["fit", *args])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    missing = tmp_path / "nope.jsonl"
    assert (
        err == f"error: HellaSwag file {missing} does not exist; pass the path of hellaswag_val.jsonl with "
        "--eval.hellaswag_path."
    )
    assert not (tmp_path / "ckpt").exists() or not list((tmp_path / "ckpt").iterdir())


@pytest.mark.slow
def test_two_ddp_ranks_reduce_the_counts_exactly(gpt2_data, examples_file, tmp_path):
    """Two CPU ranks over gloo each score their share of the 7 examples (4 + 3); the logged accuracies are those
    of the final model on all 7, counted exactly."""
    path = examples_file
    args = fit_args(
        gpt2_data, tmp_path, path, **{"--trainer.devices": "2", "--trainer.strategy": "ddp", "--trainer.max_steps": "2"}
    )
    proc = run_cli_subprocess(["fit", *args], cwd=tmp_path, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    scalars = tensorboard_scalars(tmp_path / "lightning_logs" / "version_0")
    acc, acc_norm = final_model_score(tmp_path / "ckpt" / "last.ckpt", path)
    assert scalars["eval/hellaswag_acc"] == [(2, pytest.approx(acc, abs=1e-6))]
    assert scalars["eval/hellaswag_acc_norm"] == [(2, pytest.approx(acc_norm, abs=1e-6))]
    assert f"({len(EXAMPLES)} examples, " in proc.stdout + proc.stderr  # the reduced count, not a rank's share
