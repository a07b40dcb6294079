"""GPT-2 weights in and out (gpt_lightning/weights/hf.py): import from Hugging Face GPT-2 files, export to a folder
that transformers loads, the same logits both ways, and the errors a user can hit. The presets through the CLI:
train/test_hf_presets.py; hub names in an offline process: e2e/test_hf_hub_cache.py.

Every HF model here is a small random GPT2LMHeadModel built and saved locally: nothing is downloaded.
"""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from gpt_lightning.errors import UserError
from gpt_lightning.model import GPT, GPTConfig
from gpt_lightning.tokenizer import GPT2Tokenizer, offline_gpt2_files
from gpt_lightning.train.module import GPTLightningModule
from gpt_lightning.weights.hf import export_model, load_pretrained
from helpers import hf_logits, our_logits, random_hf_model

transformers = pytest.importorskip("transformers")  # the hf extra (part of dev)


def random_gpt(bias: bool, **config) -> GPT:
    torch.manual_seed(1)
    model = GPT(
        GPTConfig(**{**dict(vocab_size=65, block_size=16, n_layer=2, n_head=2, n_embd=16, bias=bias), **config})
    )
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0.0, 0.2)
    return model.eval()


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


@pytest.mark.slow  # builds GPT-2 124M twice
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
