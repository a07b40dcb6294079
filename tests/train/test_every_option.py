"""Every architecture option and every LR schedule through every path a user takes: fit, exact resume,
validate, init_from, generate (KV cache equal to no cache, past block_size) and export (a round trip where the
format represents the model, else refused in one sentence naming the option).

A new GPTConfig field cannot land untested: test_every_option_has_a_test_value fails until OPTION_VALUES
names a value for it, and that value then runs through all of the above.
"""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import pytest
import torch

from helpers import (
    assert_close,
    assert_matches_reference,
    csv_metrics,
    new_root,
    resumed_losses,
    run_cli_in,
    straight_run,
    versions,
)

# GPTConfig field -> a value other than its default, run through every path below. The sizes (SIZES) differ
# from the defaults in every tiny run already.
OPTION_VALUES = {
    "bias": False,
    "gelu_approximate": "tanh",
    "dropout": 0.1,
    "pad_vocab_multiple": 64,
    "rope": True,
    "rope_base": 500.0,
    "norm": "rmsnorm",
    "qk_norm": True,
    "mlp": "relu2",
    "tie_embeddings": False,
    "logit_softcap": 30.0,
}
# options that change nothing on their own, run with the option that they modify
COMPANIONS = {"rope_base": {"rope": True}}
# the combinations a transformers architecture represents (the tiny config has bias false), exported to it and
# read back, padded vocabulary included; and the full modern block with every option, which none represents
COMBINATIONS = {
    "llama": {"rope": True, "norm": "rmsnorm", "mlp": "swiglu", "tie_embeddings": False, "pad_vocab_multiple": 64},
    "qwen3": {"rope": True, "norm": "rmsnorm", "mlp": "swiglu", "qk_norm": True, "rope_base": 500.0},
    "modern": {
        "rope": True,
        "norm": "rmsnorm",
        "mlp": "relu2",
        "qk_norm": True,
        "tie_embeddings": False,
        "logit_softcap": 15.0,
    },
}
SIZES = ("vocab_size", "block_size", "n_layer", "n_head", "n_embd")
# the options the tiny config sets itself, which the default-value run puts back to GPTConfig's defaults
TINY_SETS = {"bias": True, "dropout": 0.0}


def test_every_option_has_a_test_value():
    from gpt_lightning.model import GPTConfig

    fields = {f.name: f.default for f in dataclasses.fields(GPTConfig)}
    missing = sorted(set(fields) - set(SIZES) - set(OPTION_VALUES))
    assert not missing, f"add a non-default value of {missing} to OPTION_VALUES, so that every path runs with it"
    assert all(OPTION_VALUES[k] != fields[k] for k in OPTION_VALUES), "each test value must differ from the default"


def test_the_module_takes_every_field_as_an_option():
    """options_from derives the --model.* options from GPTConfig: they cannot drift apart."""
    import inspect

    from gpt_lightning.model import GPTConfig
    from gpt_lightning.train.module import GPTLightningModule
    from gpt_lightning.train.optimizers import OptimizerSettings
    from gpt_lightning.train.options import field_docs
    from gpt_lightning.train.schedules import ScheduleSettings

    params = inspect.signature(GPTLightningModule).parameters
    for settings in (GPTConfig, OptimizerSettings, ScheduleSettings):
        docs = field_docs(settings)
        for f in dataclasses.fields(settings):
            assert f.name in params, f"--model.{f.name} is missing"
            assert docs.get(f.name), f"{settings.__name__}.{f.name} has no line under Attributes: (its --help)"
    module = GPTLightningModule(vocab_size=11, block_size=8, n_layer=1, n_head=1, n_embd=8, bias=False)
    assert module.hparams.bias is False and module.hparams.learning_rate == OptimizerSettings().learning_rate


@pytest.mark.parametrize("option", sorted(OPTION_VALUES))
def test_parameter_and_flop_counts_follow_every_option(option):
    """num_params (and so MFU's FLOPs per token) counts exactly the tensors the model has, for every option."""
    from gpt_lightning.model import GPT, GPTConfig, flops_per_token, num_params

    config = GPTConfig(vocab_size=37, block_size=16, n_layer=2, n_head=2, n_embd=32, **{option: OPTION_VALUES[option]})
    model = GPT(config)
    assert num_params(config, non_embedding=False) == sum(p.numel() for p in model.parameters())
    assert num_params(config) == model.get_num_params() <= num_params(config, non_embedding=False)
    assert flops_per_token(config) > 6 * num_params(config)


def overrides_for(option: str, value) -> dict:
    return {f"model.{k}": v for k, v in {**COMPANIONS.get(option, {}), option: value}.items()}


def every_path(tmp_path: Path, data_root: Path, overrides: dict) -> None:
    """fit straight and stopped + resumed (equal to 1e-6), validate, init_from, generate, export."""
    from gpt_lightning.weights.formats import NANOGPT, choose_format
    from gpt_lightning.weights.hf import HF_FORMATS
    from gpt_lightning.weights.load import load_checkpoint_model

    reference = straight_run(new_root(tmp_path / "straight", data_root, **overrides))
    root = new_root(tmp_path / "resumed", data_root, **overrides)
    assert run_cli_in(root, ["fit", "--config", "tiny.yaml", "--trainer.max_steps", "3"]) == 0
    assert run_cli_in(root, ["fit", "--config", "tiny.yaml", "--ckpt_path", "last"]) == 0
    last = root / "out/ckpt/last.ckpt"
    assert_matches_reference(reference, resumed_losses(root), last)

    # validate reads the same weights and data: the val loss the fit logged at its last step
    fit_val = csv_metrics(versions(root)[-1])[8]["val/loss"]
    assert run_cli_in(root, ["validate", "--config", "tiny.yaml", "--ckpt_path", str(last)]) == 0
    (validated,) = csv_metrics(versions(root)[-1]).values()  # one row
    assert_close(validated["val/loss"], fit_val, 1e-6)

    # a new run initialised from the checkpoint starts from its weights
    init = ["fit", "--config", "tiny.yaml", "--model.init_from", str(last), "--checkpoint.dirpath", "out/init"]
    assert run_cli_in(root, [*init, "--trainer.max_steps", "1"]) == 0

    # generation: greedy decoding with the KV cache equals decoding without it, also past block_size
    model, tokenizer = load_checkpoint_model(last)
    prompt = torch.tensor([tokenizer.encode("ab")])
    n = model.config.block_size + 6
    cached = model.generate(prompt, n, temperature=0.0, kv_cache=True)
    uncached = model.generate(prompt, n, temperature=0.0, kv_cache=False)
    assert torch.equal(cached, uncached)
    args = ["generate", "--ckpt_path", str(last), "--prompt", "ab", "--max_new_tokens", "5", "--temperature", "0"]
    assert run_cli_in(root, args) == 0

    # export: a round trip with the same logits where the format represents the model, else refused
    idx = torch.randint(0, model.config.vocab_size, (2, 12))
    for fmt, formats in (("hf", HF_FORMATS), ("nanogpt", [NANOGPT])):
        out = root / f"export-{fmt}"
        status = run_cli_in(root, ["export", "--ckpt_path", str(last), "--format", fmt, "--out", str(out)])
        try:
            choose_format(model.config, formats, fmt)
        except Exception:
            assert status == 2 and not out.exists(), f"{fmt} export should refuse {overrides}"
            continue
        assert status == 0, f"{fmt} export of {overrides} failed"
        again, _ = load_checkpoint_model(out if fmt == "hf" else out / "ckpt.pt")
        with torch.no_grad():
            theirs, ours = again(idx, idx)[0], model(idx, idx)[0]
        torch.testing.assert_close(theirs, ours[..., : theirs.size(-1)], atol=1e-5, rtol=1e-5)
        shutil.rmtree(out)


@pytest.mark.slow  # five fits per option
@pytest.mark.parametrize("option", sorted(OPTION_VALUES))
def test_every_path_with_option(option, tmp_path, data_root, capsys):
    from gpt_lightning.cli.fit_checkpoints import MAY_CHANGE
    from gpt_lightning.model import GPTConfig

    every_path(tmp_path, data_root, overrides_for(option, OPTION_VALUES[option]))
    if option in MAY_CHANGE:
        return
    # resuming or validating the checkpoint with the option at another value is refused, also when shapes agree
    other = {f.name: f.default for f in dataclasses.fields(GPTConfig)}[option]
    if other is None:  # (null means "unset", which takes the checkpoint's value: give another value)
        other = 2 * OPTION_VALUES[option]
    args = ["--config", "tiny.yaml", "--ckpt_path", "last", f"--model.{option}={other}"]
    capsys.readouterr()
    assert run_cli_in(tmp_path / "resumed", ["validate", *args]) == 2
    assert f"{option}={OPTION_VALUES[option]} there, {other} here" in capsys.readouterr().err


@pytest.mark.slow  # five fits per combination
@pytest.mark.parametrize("combination", sorted(COMBINATIONS))
def test_every_path_with_combination(combination, tmp_path, data_root):
    every_path(tmp_path, data_root, {f"model.{k}": v for k, v in COMBINATIONS[combination].items()})


@pytest.mark.slow  # five fits
def test_every_path_with_the_defaults(tmp_path, data_root):
    every_path(tmp_path, data_root, {f"model.{k}": v for k, v in TINY_SETS.items()})


@pytest.mark.slow  # two fits per schedule
@pytest.mark.parametrize("schedule", ["cosine", "wsd", "constant"])
def test_every_schedule_resumes_exactly(schedule, tmp_path, data_root):
    from gpt_lightning.train.schedules import SCHEDULES

    assert set(SCHEDULES) == {"cosine", "wsd", "constant"}, "a new schedule: add it to this test's parameters"
    overrides = {"model.lr_schedule": schedule, "model.decay_fraction": 0.5}
    reference = straight_run(new_root(tmp_path / "straight", data_root, **overrides))
    root = new_root(tmp_path / "resumed", data_root, **overrides)
    assert run_cli_in(root, ["fit", "--config", "tiny.yaml", "--trainer.max_steps", "5"]) == 0
    assert run_cli_in(root, ["fit", "--config", "tiny.yaml", "--ckpt_path", "last"]) == 0
    assert_matches_reference(reference, resumed_losses(root), root / "out/ckpt/last.ckpt")
    lrs = {s: m["train/lr"] for v in versions(root) for s, m in csv_metrics(v).items() if "train/lr" in m}
    assert lrs == pytest.approx(reference["lrs"], abs=1e-12)
