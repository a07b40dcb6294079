"""The real command line on tiny data: fit writes checkpoints and TensorBoard events and learns; validate
reads the checkpoint back; every preset in configs/ parses and instantiates."""

from pathlib import Path

import pytest
import torch
import yaml
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from gpt_lightning.cli.fit import GPTLightningCLI
from gpt_lightning.data.prepare import prepare
from helpers import REPO, TINY_OVER_PRESET, run_cli_subprocess
from helpers import tensorboard_scalars as scalars

pytestmark = pytest.mark.slow

PRESETS = sorted((REPO / "configs").glob("*.yaml"))


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory, char_data):
    """60 optimizer steps of a tiny model through `python -m gpt_lightning fit`."""
    cwd = tmp_path_factory.mktemp("fit")
    result = run_cli_subprocess(
        [
            "fit",
            "--config",
            str(REPO / "configs" / "shakespeare_char_cpu.yaml"),
            f"--data.data_dir={char_data}",
            *TINY_OVER_PRESET,
            "--model.learning_rate=3e-3",
            "--trainer.max_steps=60",
            "--trainer.log_every_n_steps=5",
            "--val_every_n_steps=30",
            "--checkpoint.dirpath=out/tiny/checkpoints",
            "--trainer.logger.init_args.name=tiny",
            "--sample.max_new_tokens=20",
        ],
        cwd=cwd,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return cwd / "out" / "tiny"


def test_fit_writes_checkpoints_and_tensorboard_events(trained_run):
    ckpts = sorted(p.name for p in (trained_run / "checkpoints").glob("*.ckpt"))
    assert "last.ckpt" in ckpts and any(name.startswith("best-") for name in ckpts)
    run_dir = trained_run / "version_0"
    assert list(run_dir.glob("events.out.tfevents.*"))
    acc = EventAccumulator(str(run_dir))
    acc.Reload()
    tags = set(acc.Tags()["scalars"])
    assert {"train/loss", "val/loss", "val/perplexity"} <= tags
    assert "train/lr" in tags and not any(t.startswith("lr-") for t in tags)  # one LR curve, not one per group
    assert "samples/text_summary" in acc.Tags()["tensors"]  # the generated text sample


def test_fit_lowers_the_loss(trained_run):
    train = scalars(trained_run / "version_0", "train/loss")
    assert train[-1][0] >= 55
    first, last = train[0][1], train[-1][1]
    assert last < first - 0.5, train
    val = scalars(trained_run / "version_0", "val/loss")
    assert [s for s, _ in val] == [0, 30, 60]  # before training, then every 30 optimizer steps done
    assert val[-1][1] < val[0][1]


def test_checkpoint_alone_rebuilds_the_model(trained_run):
    ckpt = torch.load(trained_run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    hp = ckpt["hyper_parameters"]
    assert (hp["n_layer"], hp["n_embd"], hp["block_size"]) == (2, 32, 16)
    assert hp["tokenizer"]["kind"] == "char" and hp["vocab_size"] == len(hp["tokenizer"]["chars"])
    assert ckpt["global_step"] == 60
    assert ckpt["datamodule_state_dict"] if "datamodule_state_dict" in ckpt else True


def test_validate_from_the_checkpoint(trained_run, char_data):
    result = run_cli_subprocess(
        [
            "validate",
            "--config",
            str(REPO / "configs" / "shakespeare_char_cpu.yaml"),
            f"--data.data_dir={char_data}",
            *TINY_OVER_PRESET,
            "--trainer.logger=false",
            f"--ckpt_path={trained_run / 'checkpoints' / 'last.ckpt'}",
        ],
        cwd=trained_run.parent.parent,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    val_at_end = scalars(trained_run / "version_0", "val/loss")[-1][1]
    reported = float(result.stdout.split("val/loss")[1].split()[1].strip("│┃|"))
    assert reported == pytest.approx(val_at_end, abs=1e-4)


@pytest.fixture(scope="module")
def gpt2_data(tmp_path_factory, tiny_text_file):
    out = tmp_path_factory.mktemp("data") / "tiny_gpt2"
    prepare(str(tiny_text_file), "gpt2", out)
    return out


@pytest.fixture(scope="module")
def tiny_hf_gpt2(tmp_path_factory) -> Path:
    """A random one-layer model in Hugging Face's GPT-2 format with GPT-2's vocabulary: the stand-in for
    OpenAI's weights, which this offline machine cannot download."""
    transformers = pytest.importorskip("transformers")
    folder = tmp_path_factory.mktemp("hf") / "tiny_gpt2"
    config = transformers.GPT2Config(vocab_size=50257, n_positions=64, n_embd=16, n_layer=1, n_head=2)
    transformers.GPT2LMHeadModel(config).save_pretrained(folder)
    return folder


# What this CPU-only, offline test machine cannot have: a GPU strategy, or pretrained weights to download.
# Everything else in a preset is parsed and instantiated as written.
HARDWARE_OVERRIDES = [
    "--trainer.accelerator=cpu",
    "--trainer.devices=1",
    "--trainer.strategy=auto",
    "--trainer.precision=32-true",
]


@pytest.mark.parametrize("preset", PRESETS, ids=[p.stem for p in PRESETS])
def test_every_preset_parses_and_instantiates(preset, tmp_path, monkeypatch, char_data, gpt2_data, request):
    monkeypatch.chdir(tmp_path)
    # 1) the preset as written: every key exists and has the right type
    printed = run_cli_subprocess(["fit", "--config", str(preset), "--print_config"], cwd=tmp_path)
    assert printed.returncode == 0, printed.stderr[-2000:]
    # 2) instantiate model, data and Trainer, on local tiny data of the preset's tokenizer
    tokenizer = "gpt2" if "tokenizer: gpt2" in preset.read_text() else "char"
    data_dir = gpt2_data if tokenizer == "gpt2" else char_data
    args = ["--config", str(preset), f"--data.data_dir={data_dir}", "--data.block_size=16", *HARDWARE_OVERRIDES]
    written = yaml.safe_load(preset.read_text())
    init_from = (written.get("model") or {}).get("init_from", "scratch")
    if init_from != "scratch":
        args.append(f"--model.init_from={request.getfixturevalue('tiny_hf_gpt2')}")
    cli = GPTLightningCLI(args=args, run=False)
    assert cli.model.hparams.vocab_size == cli.datamodule.vocab_size
    if "max_steps" in (written.get("trainer") or {}):  # a training preset (eval_gpt2 only validates)
        assert cli.trainer.max_steps == written["trainer"]["max_steps"] > 0
        assert cli.trainer.gradient_clip_val == 1.0
