"""GPT-2 weights in and out (gpt_lightning/hf.py): import from Hugging Face GPT-2 files, export to a folder that
transformers loads, the same logits both ways, `fit` from a local GPT-2 folder, and the errors a user can hit.

Every HF model here is a small random GPT2LMHeadModel built and saved locally: nothing is downloaded.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

transformers = pytest.importorskip("transformers")  # the hf extra (part of dev)

from gpt_lightning.cli import main  # noqa: E402
from gpt_lightning.errors import UserError  # noqa: E402
from gpt_lightning.weights.checkpoint import read_gpt_checkpoint  # noqa: E402
from gpt_lightning.weights.hf import export_model, load_pretrained  # noqa: E402
from gpt_lightning.model import GPT, GPTConfig  # noqa: E402
from gpt_lightning.train.module import GPTLightningModule  # noqa: E402
from gpt_lightning.tokenizer import GPT2Tokenizer, offline_gpt2_files  # noqa: E402

SHAKESPEARE = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "tinyshakespeare.txt"


def random_hf_model(**config) -> "transformers.GPT2LMHeadModel":
    """A tiny GPT-2 with every parameter random (HF initialises biases and LayerNorms to 0 and 1, which
    would hide a bias or LayerNorm mix-up)."""
    torch.manual_seed(0)
    defaults = dict(vocab_size=97, n_positions=32, n_embd=32, n_layer=2, n_head=4, bos_token_id=None, eos_token_id=None)
    model = transformers.GPT2LMHeadModel(transformers.GPT2Config(**{**defaults, **config}))
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0.0, 0.2)
    return model.eval()


def random_gpt(bias: bool, **config) -> GPT:
    torch.manual_seed(1)
    model = GPT(GPTConfig(**{**dict(vocab_size=65, block_size=16, n_layer=2, n_head=2, n_embd=16, bias=bias), **config}))
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0.0, 0.2)
    return model.eval()


def hf_logits(model, idx: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(idx).logits


def our_logits(model: GPT, idx: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(idx, idx)[0]  # with targets: logits at every position


def imported(init_from) -> GPT:
    config, sd, _ = load_pretrained(str(init_from))
    model = GPT(config)
    model.load_state_dict(sd)
    return model.eval()


# ---------------------------------------------------------------- HF -> ours


@pytest.mark.parametrize("activation", ["gelu_new", "gelu"])
def test_import_folder_and_file_give_hf_logits(tmp_path, activation):
    hf = random_hf_model(activation_function=activation)
    hf.save_pretrained(tmp_path / "hf")
    hf.save_pretrained(tmp_path / "sharded", max_shard_size="40KB")
    assert (tmp_path / "sharded" / "model.safetensors.index.json").is_file()
    (tmp_path / "bin").mkdir()  # the older pickle format some hub folders still have
    shutil.copy(tmp_path / "hf" / "config.json", tmp_path / "bin")
    torch.save(hf.state_dict(), tmp_path / "bin" / "pytorch_model.bin")
    idx = torch.randint(0, 97, (2, 32))
    for source in (tmp_path / "hf", tmp_path / "hf" / "model.safetensors", tmp_path / "sharded", tmp_path / "bin"):
        ours = imported(source)
        assert ours.config.gelu_approximate == ("tanh" if activation == "gelu_new" else "none")
        torch.testing.assert_close(our_logits(ours, idx), hf_logits(hf, idx), atol=1e-5, rtol=0)


def test_import_hub_style_file_without_config(tmp_path):
    """OpenAI's files on the hub have bare keys (`h.0.attn...`), carry the causal-mask buffers and may come
    without config.json; n_head then comes from GPT-2's width -> heads table."""
    from safetensors.torch import save_file

    hf = random_hf_model(n_embd=768, n_head=12, n_layer=1, vocab_size=50, n_positions=8)
    sd = {k.removeprefix("transformer."): v.clone() for k, v in hf.state_dict().items() if k != "lm_head.weight"}
    sd["h.0.attn.bias"] = torch.tril(torch.ones(1, 1, 8, 8))  # as in the hub's gpt2 file
    save_file(sd, str(tmp_path / "bare.safetensors"))
    ours = imported(tmp_path / "bare.safetensors")
    assert (ours.config.n_head, ours.config.n_layer, ours.config.block_size) == (12, 1, 8)
    idx = torch.randint(0, 50, (2, 8))
    torch.testing.assert_close(our_logits(ours, idx), hf_logits(hf, idx), atol=1e-5, rtol=0)


# ---------------------------------------------------------------- ours -> HF -> ours


@pytest.mark.parametrize("bias", [True, False])
def test_export_loads_in_transformers_with_same_logits(tmp_path, bias):
    ours = random_gpt(bias)
    tokenizer = {"kind": "char", "chars": [chr(65 + i) for i in range(65)]}
    export_model(ours.config, ours.state_dict(), tmp_path / "out", tokenizer)
    hf = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "out").eval()
    assert type(hf).__name__ == "GPT2LMHeadModel"
    idx = torch.randint(0, 65, (3, 16))
    torch.testing.assert_close(hf_logits(hf, idx), our_logits(ours, idx), atol=1e-5, rtol=0)
    # and back: the export imports as the very model it came from, bias=False and tokenizer included
    config, sd, tok = load_pretrained(str(tmp_path / "out"))
    assert config == ours.config and tok == tokenizer
    back = GPT(config)
    back.load_state_dict(sd)
    torch.testing.assert_close(our_logits(back.eval(), idx), our_logits(ours, idx), atol=0, rtol=0)


@pytest.mark.skipif(offline_gpt2_files() is None, reason="needs GPT-2's BPE files from the offline extra")
def test_export_of_a_gpt2_bpe_model_carries_the_tokenizer(tmp_path):
    ours = random_gpt(True, vocab_size=50257, n_layer=1, n_embd=8, n_head=2)
    export_model(ours.config, ours.state_dict(), tmp_path / "out", {"kind": "gpt2", "encoding": "gpt2"})
    hf_tok = transformers.AutoTokenizer.from_pretrained(tmp_path / "out")
    text = "Once upon a time there were four little Rabbits"
    assert hf_tok(text)["input_ids"] == GPT2Tokenizer().encode(text)
    assert json.loads((tmp_path / "out" / "config.json").read_text())["eos_token_id"] == 50256


def test_gpt2_124m_shapes():
    """An untrained GPT-2 124M on two five-token prompts; its exported config is transformers' GPT-2 default."""
    tok = GPT2Tokenizer()
    idx = torch.tensor([tok.encode("Once upon a time there"), tok.encode("were four little Rabbits")])
    module = GPTLightningModule(vocab_size=50257, gelu_approximate="tanh").eval()
    assert module.model.get_num_params(non_embedding=False) == 124_439_808  # as HF's GPT2LMHeadModel
    with torch.no_grad():
        logits, loss = module(idx, idx)
    assert logits.shape == (2, 5, 50257) and torch.isfinite(loss)
    from gpt_lightning.weights.hf import hf_config_from_gpt

    ours = transformers.GPT2Config(**hf_config_from_gpt(module.config, {"kind": "gpt2"}))
    default = transformers.GPT2Config()
    for key in ("vocab_size", "n_positions", "n_embd", "n_layer", "n_head", "activation_function", "eos_token_id"):
        assert getattr(ours, key) == getattr(default, key), key


# ---------------------------------------------------------------- fitting to a run, and the errors


def test_module_refuses_conflicts_and_crops(tmp_path):
    random_hf_model().save_pretrained(tmp_path / "hf")
    src = str(tmp_path / "hf")
    module = GPTLightningModule(init_from=src, block_size=16, vocab_size=65, dropout=0.1)
    config = module.config
    assert (config.block_size, config.vocab_size, config.dropout, config.n_layer) == (16, 65, 0.1, 2)
    # the checkpoint's hyper_parameters rebuild it without the source: resolved architecture, init_from scratch
    assert module.hparams.init_from == "scratch" and module.hparams.n_head == 4
    assert module.hparams.gelu_approximate == "tanh"
    assert module.model.lm_head.weight is module.model.transformer.wte.weight  # still tied
    assert all(p.is_contiguous() for p in module.parameters())  # the Conv1D transposes are copies
    for kwargs, message in [
        (dict(n_layer=3), "n_layer=3 conflicts"),
        (dict(bias=False), "bias=False conflicts"),
        (dict(block_size=64), "longer than the 32 positions"),
        (dict(vocab_size=98), "only knows 97"),
    ]:
        with pytest.raises(UserError, match=message):
            GPTLightningModule(init_from=src, **kwargs)
    with pytest.raises(UserError, match="neither a file or folder"):
        GPTLightningModule(init_from=str(tmp_path / "missing"))


def test_char_data_with_gpt2_weights_is_refused(tmp_path):
    random_hf_model(vocab_size=50257, n_embd=8, n_head=2, n_layer=1).save_pretrained(tmp_path / "hf")
    module = GPTLightningModule(init_from=str(tmp_path / "hf"))
    assert module.hparams.tokenizer == {"kind": "gpt2", "encoding": "gpt2"}  # GPT-2's vocabulary size
    with pytest.raises(UserError, match="prepare the data with --tokenizer gpt2"):
        GPTLightningModule(init_from=str(tmp_path / "hf"), vocab_size=65, tokenizer={"kind": "char", "chars": ["a"]})


def test_hub_name_offline_without_cache_says_how_to_pass_a_folder(tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf_home")}
    code = (
        "from gpt_lightning.errors import reported_user_errors\n"
        "from gpt_lightning.weights.hf import load_pretrained\n"
        "with reported_user_errors():\n    load_pretrained('gpt2')\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith("error: ") and "--model.init_from=./gpt2" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_hub_name_loads_from_the_hub_cache_offline(tmp_path):
    """`--model.init_from=gpt2` reads the Hugging Face hub cache: a cached copy (here a random stand-in laid out
    as the hub cache lays out openai-community/gpt2) loads with no network, logits equal transformers'."""
    hf = random_hf_model(n_layer=2, n_embd=32, n_head=4)
    snapshot = tmp_path / "hf_home" / "hub" / "models--openai-community--gpt2" / "snapshots" / ("0" * 40)
    hf.save_pretrained(snapshot)
    (snapshot.parents[1] / "refs").mkdir()
    (snapshot.parents[1] / "refs" / "main").write_text("0" * 40)
    idx = torch.randint(0, 97, (2, 8))
    torch.save(idx, tmp_path / "idx.pt")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf_home")}
    code = (
        "import torch\n"
        "from gpt_lightning.weights.state_dict import build_model\n"
        "from gpt_lightning.weights.hf import load_pretrained\n"
        "config, sd, meta = load_pretrained('gpt2')\n"
        "model = build_model(config, sd).eval()\n"
        f"idx = torch.load({str(tmp_path / 'idx.pt')!r})\n"
        f"torch.save(model(idx, idx)[0].detach(), {str(tmp_path / 'logits.pt')!r})\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    torch.testing.assert_close(torch.load(tmp_path / "logits.pt"), hf_logits(hf, idx), atol=1e-5, rtol=0)


# ---------------------------------------------------------------- the presets through the CLI

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


@pytest.fixture(scope="module")
def gpt2_run(tmp_path_factory):
    """A random one-layer GPT-2 with GPT-2's vocabulary saved by transformers, and a small corpus prepared
    with GPT-2 BPE, as the presets expect."""
    root = tmp_path_factory.mktemp("gpt2_run")
    hf = random_hf_model(vocab_size=50257, n_layer=1, n_embd=16, n_head=2)
    hf.save_pretrained(root / "hf")
    corpus = root / "corpus.txt"
    if SHAKESPEARE.is_file():
        corpus.write_text(SHAKESPEARE.read_text()[:30_000])
    else:
        corpus.write_text(" ".join(f"word{i % 997} and{i % 13}" for i in range(6_000)))
    main(["prepare", str(corpus), "--tokenizer", "gpt2", "--out", str(root / "data")])
    return root, hf


def test_eval_preset_val_loss_equals_transformers(gpt2_run, tmp_path, monkeypatch):
    from gpt_lightning.cli.fit import GPTLightningCLI
    from gpt_lightning.data.datamodule import ValWindows
    from gpt_lightning.data.bins import read_meta

    root, hf = gpt2_run
    monkeypatch.chdir(tmp_path)
    args = ["validate", "--config", str(CONFIGS / "eval_gpt2.yaml"), "--model.init_from", str(root / "hf")]
    args += ["--data.data_dir", str(root / "data"), "--data.block_size", "16", "--data.batch_size", "4"]
    args += ["--data.val_batches", "3", "--trainer.enable_progress_bar", "false"]
    cli = GPTLightningCLI(args=args)
    ours = float(cli.trainer.callback_metrics["val/loss"])
    meta = read_meta(root / "data")
    losses = []
    for x, y in ValWindows(root / "data", meta, 4, 16, num_batches=3, rank=0, world_size=1):
        logits = hf_logits(hf, x)
        losses.append(torch.nn.functional.cross_entropy(logits.flatten(0, 1), y.flatten()))
    assert ours == pytest.approx(float(torch.stack(losses).mean()), abs=1e-5)


def test_finetune_preset_compiled_then_export_and_generate(gpt2_run, tmp_path, monkeypatch):
    """Local HF folder -> the finetune preset's `fit` (compiled, learning rate 0) -> checkpoint -> `export` ->
    transformers: the original HF model's logits come back (position table cropped to block_size 16), and
    no key carries torch.compile's `_orig_mod.`."""
    root, hf = gpt2_run
    monkeypatch.chdir(tmp_path)
    ckpt_dir = tmp_path / "ckpt"
    main([
        "fit", "--config", str(CONFIGS / "finetune_shakespeare.yaml"), "--model.init_from", str(root / "hf"),
        "--model.compile", "true", "--model.learning_rate", "0", "--model.weight_decay", "0",
        "--data.data_dir", str(root / "data"), "--data.block_size", "16", "--data.batch_size", "4",
        "--trainer.accumulate_grad_batches", "1", "--trainer.max_steps", "2", "--trainer.limit_val_batches", "0",
        "--trainer.enable_progress_bar", "false", "--checkpoint.dirpath", str(ckpt_dir),
    ])  # fmt: skip
    ckpt_path = ckpt_dir / "last.ckpt"
    ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=False)
    assert not [k for k in ckpt["state_dict"] if "_orig_mod" in k or "module." in k]
    hp = ckpt["hyper_parameters"]
    assert (hp["init_from"], hp["n_layer"], hp["block_size"]) == ("scratch", 1, 16)
    assert hp["tokenizer"] == {"kind": "gpt2", "encoding": "gpt2"}

    main(["export", "--ckpt_path", str(ckpt_path), "--out", "exported"])
    back = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "exported").eval()
    assert back.config.n_positions == 16
    idx = torch.randint(0, 50257, (2, 16))
    torch.testing.assert_close(hf_logits(back, idx), hf_logits(hf, idx), atol=1e-5, rtol=0)

    # an older file with wrapper prefixes (torch.compile(model), DDP) still loads and exports
    ckpt["state_dict"] = {k.replace("model.", "model._orig_mod.module.", 1): v for k, v in ckpt["state_dict"].items()}
    torch.save(ckpt, tmp_path / "old.ckpt")
    config, sd, tokenizer = read_gpt_checkpoint(tmp_path / "old.ckpt")
    assert "transformer.wte.weight" in sd and tokenizer["kind"] == "gpt2"
    module = GPTLightningModule.load_from_checkpoint(tmp_path / "old.ckpt", map_location="cpu")
    torch.testing.assert_close(our_logits(module.model.eval(), idx), hf_logits(hf, idx), atol=1e-5, rtol=0)

    # and the imported checkpoint generates, the same tokens as transformers' greedy decoding
    from gpt_lightning.generation import Sampling, generate_text

    tok = GPT2Tokenizer()
    prompt = "ROMEO:"
    text = generate_text(module.model, tok, prompt, 8, sampling=Sampling(temperature=0))
    prompt_ids = torch.tensor([tok.encode(prompt)])
    with torch.no_grad():
        expected = hf.generate(prompt_ids, max_new_tokens=8, do_sample=False, pad_token_id=0)[0, prompt_ids.size(1) :]
    assert text == prompt + tok.decode(expected.tolist())
