"""What a person reads in TensorBoard: tags, steps, the custom-scalars layout, HPARAMS and text samples, read back
from the event files a real `fit` writes; validation at the start and at the end; `fit --help`."""

from __future__ import annotations

import math
import re

import pytest
import torch
import yaml
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from helpers import csv_metrics, new_root, run_cli_in, run_cli_in_process, train_losses, versions

TENSORBOARD = {
    "class_path": "lightning.pytorch.loggers.TensorBoardLogger",
    "init_args": {"save_dir": "out", "name": "tiny", "default_hp_metric": False},
}


def steps_of(acc: EventAccumulator, tag: str) -> list[int]:
    return [e.step for e in acc.Scalars(tag)]


@pytest.fixture(scope="module")
def tb_run(tmp_path_factory, data_root):
    """10 steps, validation every 4 (and at 0, and at the end: 10), logging every 2, text samples on."""
    overrides = {
        "trainer.logger": TENSORBOARD,
        "trainer.max_steps": 10,
        "trainer.log_every_n_steps": 2,
        "trainer.num_sanity_val_steps": -1,
        "sample.max_new_tokens": 24,
    }
    root = new_root(tmp_path_factory.mktemp("tb"), data_root, **overrides)
    assert run_cli_in(root, ["fit", "--config", "tiny.yaml"]) == 0
    run_dir = versions(root)[0]
    acc = EventAccumulator(str(run_dir), size_guidance={"scalars": 0, "tensors": 0})
    acc.Reload()
    return root, run_dir, acc


def test_tags_and_steps(tb_run):
    root, _, acc = tb_run
    scalars = set(acc.Tags()["scalars"])
    expected = {"train/loss", "train/lr", "train/grad_norm", "train/epoch", "train/tokens"}
    expected |= {"val/loss", "val/perplexity", "val/bpb", "val/best_loss", "val/best_bpb", "perf/tokens_per_sec"}
    # no Lightning "epoch" (train/epoch counts passes over the data), one LR curve (not lr-AdamW/pg1 and pg2),
    # no MFU on a CPU without a known peak
    assert scalars == expected
    # every scalar at the optimizer steps done
    for tag in ("train/loss", "train/lr", "train/grad_norm", "train/epoch", "train/tokens", "perf/tokens_per_sec"):
        assert steps_of(acc, tag) == [2, 4, 6, 8, 10], tag
    assert steps_of(acc, "val/loss") == [0, 4, 8, 10]  # at the start, every 4, and the final step
    assert steps_of(acc, "val/perplexity") == [0, 4, 8, 10]
    assert steps_of(acc, "val/bpb") == [0, 4, 8, 10]
    assert steps_of(acc, "val/best_loss") == [0, 4, 8, 10]  # HPARAMS' best val loss: the running minimum
    losses = [e.value for e in acc.Scalars("val/loss")]
    assert [e.value for e in acc.Scalars("val/best_loss")] == [min(losses[: i + 1]) for i in range(len(losses))]
    # tokens seen: steps x batch 8 x block 16 x accumulation 2
    assert [e.value for e in acc.Scalars("train/tokens")] == [s * 8 * 16 * 2 for s in (2, 4, 6, 8, 10)]
    val = dict((e.step, e.value) for e in acc.Scalars("val/loss"))
    assert abs(val[0] - math.log(14)) < 0.3  # a fresh model: about ln(vocab_size) (14 characters)
    assert all(e.value > 0 for e in acc.Scalars("train/grad_norm"))
    # the best checkpoint is named by the same step and value as the scalars
    (best,) = (root / "out/ckpt").glob("best-*.ckpt")
    step, loss = re.match(r"best-step(\d+)-val([\d.]+)\.ckpt", best.name).groups()
    assert int(step) in val and abs(float(loss) - val[int(step)]) < 1e-4


def test_text_samples_say_what_they_are(tb_run):
    _, _, acc = tb_run
    (tag,) = [t for t in acc.Tags()["tensors"] if t.startswith("samples")]
    events = acc.Tensors(tag)
    assert [e.step for e in events] == [4, 8, 10]  # the validations' steps
    val = dict((e.step, e.value) for e in acc.Scalars("val/loss"))
    for e in events:
        text = e.tensor_proto.string_val[0].decode()
        header, body = text.split("\n\n", 1)
        assert f"step {e.step}" in header and f"val/loss {val[e.step]:.4f}" in header
        assert "prompt '\\n'" in header and "temperature 0.8" in header and "top_k 200" in header
        assert body.startswith("    ")  # a markdown code block: the line breaks stay


def test_custom_scalars_layout_opens_on_the_losses(tb_run):
    from tensorboard.plugins.custom_scalar import layout_pb2

    _, _, acc = tb_run
    (event,) = acc.Tensors("custom_scalars__config__")
    layout = layout_pb2.Layout.FromString(event.tensor_proto.string_val[0])
    first = layout.category[0].chart[0]
    assert list(first.multiline.tag) == ["^train/loss$", "^val/loss$"]  # train and val loss on one chart
    charts = [tag for c in layout.category for chart in c.chart for tag in chart.multiline.tag]
    assert charts[:8] == [
        "^train/loss$", "^val/loss$", "^val/bpb$", "^val/perplexity$", "^train/lr$", "^train/grad_norm$",
        "^train/tokens$", "^train/epoch$",
    ]  # fmt: skip
    assert "^perf/mfu$" not in charts  # not known on this CPU: no empty chart
    assert "^perf/tokens_per_sec$" in charts


def test_hparams_tab_and_compact_vocabulary(tb_run):
    from tensorboard.plugins.hparams import plugin_data_pb2

    root, run_dir, acc = tb_run
    content = acc.PluginTagToContent("hparams")
    # no experiment (TensorBoard derives the columns from all runs, see test_hparams_tell_two_runs_apart)
    assert "_hparams_/experiment" not in content
    start = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/session_start_info"]).session_start_info
    names = set(start.hparams)
    assert {"n_layer", "n_embd", "learning_rate", "weight_decay", "data.batch_size", "trainer.max_steps"} <= names
    assert start.hparams["bias"].string_value == "false"  # readable, not 0.0000
    assert start.hparams["seed"].string_value == "1337"
    assert "hp_metric" not in acc.Tags()["scalars"]  # no placeholder metric
    hparams = yaml.safe_load((run_dir / "hparams.yaml").read_text())
    assert isinstance(hparams["tokenizer"]["chars"], str) and len(hparams["tokenizer"]["chars"]) == 14
    ckpt = torch.load(root / "out/ckpt/last.ckpt", weights_only=False)
    assert isinstance(ckpt["hyper_parameters"]["tokenizer"]["chars"], str)


def test_checkpoint_with_the_old_vocabulary_list_still_loads(tb_run, tmp_path):
    from gpt_lightning.weights.load import load_checkpoint_model

    root, _, _ = tb_run
    ckpt = torch.load(root / "out/ckpt/last.ckpt", weights_only=False)
    chars = ckpt["hyper_parameters"]["tokenizer"]["chars"]
    ckpt["hyper_parameters"]["tokenizer"]["chars"] = list(chars)  # as checkpoints were written before
    torch.save(ckpt, tmp_path / "old.ckpt")
    model, tokenizer = load_checkpoint_model(tmp_path / "old.ckpt")
    assert tokenizer.decode(tokenizer.encode("abc ij")) == "abc ij" and tokenizer.vocab_size == len(chars)


@pytest.mark.slow  # two fits
def test_validation_at_start_does_not_change_training(tmp_path, monkeypatch, data_root):
    """The step-0 validation neither draws from the training RNG nor moves the data stream (dropout on, so a
    consumed RNG draw would change the losses); and a run ends with a validation of its last step, once."""
    losses, vals = [], []
    for sanity in (-1, 0):
        root = new_root(tmp_path / str(sanity), data_root, **{"model.dropout": 0.2})
        monkeypatch.chdir(root)
        assert run_cli_in_process(["fit", "--config", "tiny.yaml", f"--trainer.num_sanity_val_steps={sanity}"]) == 0
        losses.append(train_losses(versions(root)[0]))
        vals.append([s for s, m in csv_metrics(versions(root)[0]).items() if "val/loss" in m])
    assert losses[0] == losses[1] and sorted(losses[0]) == list(range(1, 9))
    assert vals == [[0, 4, 8], [4, 8]]  # max_steps 8 is a validation step: validated once, not twice


def test_a_run_shorter_than_the_validation_interval_ends_validated(tmp_path, monkeypatch, data_root):
    root = new_root(tmp_path, data_root, **{"trainer.max_steps": 3, "trainer.log_every_n_steps": 2})
    monkeypatch.chdir(root)
    assert run_cli_in_process(["fit", "--config", "tiny.yaml"]) == 0
    metrics = csv_metrics(versions(root)[0])
    assert [s for s, m in metrics.items() if "val/loss" in m] == [3]
    assert [s for s, m in metrics.items() if "train/loss" in m] == [2, 3]  # the last step too, logged once
    assert [p.name.split("-val")[0] for p in (root / "out/ckpt").glob("best-*.ckpt")] == ["best-step000003"]


def test_lr_monitor_options_are_gone_with_one_sentence(capsys):
    assert run_cli_in_process(["fit", "--lr_monitor.logging_interval=step"]) == 2
    assert "learning rate is logged as train/lr" in capsys.readouterr().err


def test_fit_help_documents_every_option_group(capsys):
    assert run_cli_in_process(["fit", "--help"]) == 0
    text = capsys.readouterr().out
    assert text.startswith("usage: python -m gpt_lightning") and "__main__" not in text
    assert "after every epoch" not in text
    assert "(type: str, default: '\\n')" in text  # the newline prompt, visible
    # a one-line usage, then the options set most often (model, data, trainer basics) before the long tail
    usage, _, rest = text.partition("\n")
    assert usage.startswith("usage: python -m gpt_lightning fit [-c CONFIG]") and "--trainer.min_epochs" not in usage
    first_group = rest[: rest.index("\noptions:")]
    assert "Most used options" in first_group
    for option in ("--model.n_layer", "--data.data_dir", "--trainer.max_steps", "--trainer.devices", "--ckpt_path"):
        assert f"  {option} " in first_group, option
    groups = [text.index(title) for title in ("A GPT and how to train it:", "Token bins made", "Customize every")]
    assert groups == sorted(groups)  # model, data, then the Trainer's forty options
    for group in ("checkpoint", "last_checkpoint", "sample", "throughput", "eval", "model", "data"):
        options = re.findall(rf"^  --{group}\.(\w+) \S+([^\n]*)\n((?:\s{{20,}}[^\n]*\n)*)", text, flags=re.M)
        assert options, group
        for name, same_line, next_lines in options:
            description = same_line + " " + next_lines  # after the metavar, on its line or the next ones
            words = (description.split("(type:")[0] if "(type:" in description else description).split()
            assert len(words) >= 2, f"--{group}.{name} has no description"


@pytest.mark.slow  # two fits
def test_hparams_tell_two_runs_apart(tmp_path, data_root):
    """Two runs that differ only in learning rate: TensorBoard's HPARAMS table (its own backend code, on the hparams
    data both runs wrote) shows learning_rate in the first column, with both values."""
    from tensorboard.backend.event_processing.event_multiplexer import EventMultiplexer
    from tensorboard.plugins.hparams import backend_context

    root = new_root(tmp_path, data_root, **{"trainer.logger": TENSORBOARD, "trainer.max_steps": 2})
    for i, lr in enumerate(("1e-2", "3e-3")):
        args = ["fit", "--config", "tiny.yaml", f"--model.learning_rate={lr}", f"--checkpoint.dirpath=out/ckpt{i}"]
        assert run_cli_in(root, args) == 0
    runs = EventMultiplexer().AddRunsFromDirectory(str(root / "out" / "tiny"))
    runs.Reload()
    content = {run: runs.PluginRunToTagToContent("hparams")[run] for run in runs.Runs()}
    assert len(content) == 2 and not any("_hparams_/experiment" in tags for tags in content.values())
    context = backend_context.Context.__new__(backend_context.Context)  # the methods used read no state
    experiment = context._compute_experiment_from_runs(None, "", False, content)
    backend_context._sort_and_reduce_to_hparams_limit(experiment)
    first = experiment.hparam_infos[0]
    assert first.name == "learning_rate" and first.differs
    assert [h.name for h in experiment.hparam_infos if h.differs] == ["learning_rate"]
