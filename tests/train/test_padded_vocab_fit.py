"""The padded GPT-2 vocabulary through the real commands: `fit` on GPT-2 BPE data builds 50304 rows (and
characters keep their own), `generate` never emits a padding id, `export` writes a 50257-row GPT-2 with our
logits, a checkpoint resumes, an unpadded one from before padding existed still resumes and generates, and
`init_from` a 50257-row GPT-2 pads it without changing its outputs."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from gpt_lightning.model import GPT, GPTConfig
from gpt_lightning.train.module import GPTLightningModule
from helpers import TINY_TEXT, random_hf_model, run_cli_in_process, write_tiny_config

GPT2_META = {"kind": "gpt2", "encoding": "gpt2"}


@pytest.fixture(scope="module")
def gpt2_data(tmp_path_factory) -> Path:
    from gpt_lightning.data.prepare import prepare

    root = tmp_path_factory.mktemp("gpt2_data")
    (root / "tiny.txt").write_text(TINY_TEXT * 12)  # val holds more than one block of 1024
    prepare(str(root / "tiny.txt"), "gpt2", root / "data")
    return root / "data"


def fit(root: Path, data: Path, *args: str) -> Path:
    """The tiny run on GPT-2 BPE data in root; returns its last.ckpt."""
    status = run_cli_in_process(
        ["fit", "--config", str(root / "tiny.yaml"), f"--data.data_dir={data}", "--trainer.max_steps=4", *args]
    )
    assert status == 0
    return root / "out" / "ckpt" / "last.ckpt"


def rows(ckpt: Path) -> int:
    return torch.load(ckpt, weights_only=True)["state_dict"]["model.transformer.wte.weight"].shape[0]


def generate(ckpt: Path, capsys) -> str:
    capsys.readouterr()
    args = ["--max_new_tokens", "30", "--num_samples", "3", "--temperature", "2.0", "--top_k", "null"]
    assert run_cli_in_process(["generate", "--ckpt_path", str(ckpt), "--device", "cpu", *args]) == 0
    return capsys.readouterr().out


@pytest.mark.slow  # a few seconds of Trainer run: left out of the fast loop, run in CI
def test_gpt2_bpe_run_pads_generates_exports_and_resumes(tmp_path, gpt2_data, monkeypatch, capsys):
    transformers = pytest.importorskip("transformers")
    from gpt_lightning.weights.load import load_checkpoint_model

    monkeypatch.chdir(tmp_path)
    write_tiny_config(tmp_path)
    ckpt = fit(tmp_path, gpt2_data)
    hparams = torch.load(ckpt, weights_only=True)["hyper_parameters"]
    assert (hparams["vocab_size"], hparams["pad_vocab_multiple"], rows(ckpt)) == (50257, 64, 50304)

    # generate: hot sampling over the whole vocabulary decodes (a padding id would not)
    assert len(generate(ckpt, capsys)) > 30

    # export: 50257 rows, loaded by transformers, our logits on every real id
    assert run_cli_in_process(["export", "--ckpt_path", str(ckpt), "--out", str(tmp_path / "hf")]) == 0
    hf = transformers.GPT2LMHeadModel.from_pretrained(tmp_path / "hf").eval()
    assert hf.config.vocab_size == 50257 and hf.transformer.wte.weight.shape[0] == 50257
    ours, _ = load_checkpoint_model(ckpt)
    idx = torch.randint(0, 50257, (2, 16))
    with torch.no_grad():
        torch.testing.assert_close(hf(idx).logits, ours(idx, idx)[0][..., :50257], atol=1e-5, rtol=1e-5)

    # resume: the checkpoint's padding comes back with it
    fit(tmp_path, gpt2_data, "--trainer.max_steps=6", f"--ckpt_path={ckpt}")
    assert torch.load(ckpt, weights_only=True)["global_step"] == 6 and rows(ckpt) == 50304


@pytest.mark.slow  # a few seconds of Trainer run: left out of the fast loop, run in CI
def test_an_unpadded_checkpoint_from_before_padding_resumes_and_generates(tmp_path, gpt2_data, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    write_tiny_config(tmp_path)
    ckpt = fit(tmp_path, gpt2_data, "--model.pad_vocab_multiple=1")
    old = torch.load(ckpt, weights_only=True)
    del old["hyper_parameters"]["pad_vocab_multiple"]  # as every checkpoint written before the option existed
    torch.save(old, ckpt)
    assert rows(ckpt) == 50257
    fit(tmp_path, gpt2_data, "--trainer.max_steps=6", f"--ckpt_path={ckpt}")
    resumed = torch.load(ckpt, weights_only=True)
    assert resumed["global_step"] == 6 and rows(ckpt) == 50257
    assert resumed["hyper_parameters"]["pad_vocab_multiple"] == 1
    assert len(generate(ckpt, capsys)) > 30


def test_init_from_a_50257_row_gpt2_pads_it_and_keeps_its_outputs(tmp_path):
    hf = random_hf_model(vocab_size=50257, n_positions=32, n_embd=16, n_layer=1, n_head=2)
    hf.save_pretrained(tmp_path / "gpt2")
    module = GPTLightningModule(init_from=str(tmp_path / "gpt2"), vocab_size=50257, tokenizer=GPT2_META).eval()
    assert module.model.lm_head.weight.shape[0] == 50304 and module.hparams.pad_vocab_multiple == 64
    idx = torch.randint(0, 50257, (2, 16))
    with torch.no_grad():
        theirs = hf(idx, labels=idx)
        logits, _ = module(idx, idx)
        _, shifted_loss = module(idx[:, :-1].contiguous(), idx[:, 1:].contiguous())
    torch.testing.assert_close(logits[..., :50257], theirs.logits, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(shifted_loss, theirs.loss, atol=1e-5, rtol=1e-5)  # padding takes no probability


def test_characters_keep_nanogpts_parameter_counts():
    chars = {"kind": "char", "chars": [chr(32 + i) for i in range(65)]}
    baby = GPTLightningModule(vocab_size=65, tokenizer=chars, block_size=256, n_layer=6, n_head=6, n_embd=384)
    assert baby.hparams.pad_vocab_multiple == 1
    assert sum(p.numel() for p in baby.model.parameters()) == sum(
        p.numel() for p in GPT(GPTConfig(vocab_size=65, block_size=256, n_layer=6, n_head=6, n_embd=384)).parameters()
    )
    assert baby.model.transformer.wte.weight.shape[0] == 65


@pytest.mark.slow  # a few seconds of Trainer run: left out of the fast loop, run in CI
def test_gpt2_124m_preset_builds_nanogpts_padded_model(tmp_path, gpt2_data, monkeypatch):
    """What configs/gpt2_124m.yaml's header says was run: on GPT-2 BPE data, 50304 token rows and
    123,587,328 parameters without the position table (nanoGPT's model with bias=False)."""
    from gpt_lightning.cli.fit import GPTLightningCLI
    from helpers import REPO

    monkeypatch.chdir(tmp_path)
    cli = GPTLightningCLI(
        args=[
            "--config", str(REPO / "configs" / "gpt2_124m.yaml"), f"--data.data_dir={gpt2_data}",
            "--trainer.accelerator=cpu", "--trainer.devices=1", "--trainer.strategy=auto",
            "--trainer.precision=32-true", "--trainer.logger=false", "--model.compile=false",
        ],
        run=False,
    )  # fmt: skip
    model = cli.model.model
    assert model.lm_head.weight.shape == (50304, 768) and model.config.vocab_size == 50257
    assert model.get_num_params() == 123_587_328
