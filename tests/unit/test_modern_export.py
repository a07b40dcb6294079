"""The modern-block options (rope, norm, qk_norm, mlp, tie_embeddings, logit_softcap): counts, optimizer groups,
padded vocabularies, the meta-device build, and export that tells the truth (Llama / Qwen3 to transformers'
logits, refusal naming the option where nothing represents the model). The CLI paths: train/test_every_option.py.
"""

from __future__ import annotations

import dataclasses

import pytest
import torch

from gpt_lightning.errors import UserError
from gpt_lightning.model import GPT, GPTConfig, num_params
from gpt_lightning.weights.formats import NANOGPT, choose_format
from gpt_lightning.weights.hf import HF_FORMATS, export_model, load_pretrained
from gpt_lightning.weights.state_dict import build_model, pad_token_rows, unpad_token_rows

TINY = dict(vocab_size=65, block_size=16, n_layer=2, n_head=4, n_embd=64, bias=False)
LLAMA = dict(rope=True, norm="rmsnorm", mlp="swiglu")
MODERN = {"rope": True, "norm": "rmsnorm", "qk_norm": True, "mlp": "swiglu", "tie_embeddings": False}
NEW_OPTIONS = {
    "rope": True,
    "rope_base": 500.0,
    "norm": "rmsnorm",
    "qk_norm": True,
    "mlp": "swiglu",
    "tie_embeddings": False,
    "logit_softcap": 30.0,
}


def perturbed(config: GPTConfig, seed: int = 0) -> GPT:
    """A model whose norm weights and biases are not 1 and 0, so a wrong mapping shows in the logits."""
    torch.manual_seed(seed)
    model = GPT(config).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    return model


@pytest.mark.parametrize(
    "options, architecture",
    [
        (dict(LLAMA), "LlamaForCausalLM"),
        (dict(LLAMA, bias=True, tie_embeddings=False, rope_base=500.0, pad_vocab_multiple=8), "LlamaForCausalLM"),
        (dict(MODERN), "Qwen3ForCausalLM"),
        (dict(MODERN, tie_embeddings=True, pad_vocab_multiple=64), "Qwen3ForCausalLM"),
    ],
)
def test_export_matches_transformers_and_imports_back(options, architecture, tmp_path):
    transformers = pytest.importorskip("transformers")
    config = GPTConfig(**{**TINY, **options})
    model = perturbed(config)
    export_model(config, model.state_dict(), tmp_path, None)
    theirs = transformers.AutoModelForCausalLM.from_pretrained(tmp_path).eval()
    assert type(theirs).__name__ == architecture
    idx = torch.randint(0, 65, (2, 16))
    with torch.no_grad():
        ours = model(idx, idx)[0][..., :65]
        torch.testing.assert_close(theirs(idx).logits, ours, atol=1e-5, rtol=1e-5)
    # and back: the same config (unpadded, as exported) and the same logits
    back_config, sd, _ = load_pretrained(str(tmp_path))
    assert back_config == dataclasses.replace(config, pad_vocab_multiple=1)
    with torch.no_grad():
        torch.testing.assert_close(build_model(back_config, sd).eval()(idx, idx)[0], ours, atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize(
    "options, named",
    [
        (dict(rope=True), "--model.rope=True"),  # RoPE with GPT-2's LayerNorm and GELU
        (dict(LLAMA, logit_softcap=30.0), "--model.logit_softcap=30.0"),  # Llama but for the soft cap
        (dict(LLAMA, mlp="relu2"), "--model.mlp=relu2"),
        (dict(MODERN, bias=True), "--model.qk_norm=True"),  # Qwen3's MLP has no biases, Llama has no QK-norm
        (dict(tie_embeddings=False), "--model.tie_embeddings=False"),
        (dict(norm="rmsnorm"), "--model.norm=rmsnorm"),
    ],
)
def test_hf_export_refuses_what_no_architecture_represents(options, named, tmp_path):
    config = GPTConfig(**{**TINY, **options})
    with pytest.raises(UserError, match=named.replace(".", r"\.")):
        export_model(config, GPT(config).state_dict(), tmp_path / "out", None)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("option", sorted(NEW_OPTIONS))
def test_nanogpt_export_refuses_every_new_option(option):
    config = GPTConfig(**{**TINY, option: NEW_OPTIONS[option]})
    with pytest.raises(UserError, match=f"--model.{option}="):
        choose_format(config, [NANOGPT], "--format nanogpt")


def test_hf_import_refuses_a_llama_it_cannot_compute(tmp_path):
    pytest.importorskip("transformers")
    config = GPTConfig(**{**TINY, **LLAMA})
    export_model(config, GPT(config).state_dict(), tmp_path, None)
    import json

    hf = json.loads((tmp_path / "config.json").read_text())
    hf.pop("gpt_lightning")
    (tmp_path / "config.json").write_text(json.dumps({**hf, "rms_norm_eps": 1e-6}))
    from safetensors.torch import load_file, save_file

    save_file(load_file(tmp_path / "model.safetensors"), tmp_path / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(UserError, match="rms_norm_eps=1e-06"):
        load_pretrained(str(tmp_path))


@pytest.mark.parametrize("option", sorted(NEW_OPTIONS))
def test_parameter_count_and_flops_count_for_each_option(option):
    config = GPTConfig(**{**TINY, option: NEW_OPTIONS[option]})
    model = GPT(config)
    total = sum(p.numel() for p in model.parameters())
    lookups = config.block_size * config.n_embd if not config.rope else 0
    lookups += 0 if config.tie_embeddings else config.padded_vocab_size * config.n_embd
    assert num_params(config) == model.get_num_params() == total - lookups
    assert num_params(config, non_embedding=False) == total


def test_swiglu_keeps_the_mlp_size_of_gpt2():
    for n_embd in (128, 768, 1024, 1600):
        hidden = GPTConfig(n_embd=n_embd, n_head=16 if n_embd == 1024 else 4, mlp="swiglu").swiglu_hidden
        assert hidden % 8 == 0 and abs(3 * hidden - 8 * n_embd) / (8 * n_embd) < 0.01
    assert GPTConfig(n_embd=128, n_head=4).swiglu_hidden == 344
    assert GPTConfig(n_embd=768).swiglu_hidden == 2048


def test_untied_lm_head_is_its_own_tensor_padded_and_unpadded():
    config = GPTConfig(**{**TINY, "tie_embeddings": False, "pad_vocab_multiple": 64})
    model = perturbed(config)
    assert model.lm_head.weight is not model.transformer.wte.weight
    sd, unpadded = unpad_token_rows(model.state_dict(), config)
    assert sd["lm_head.weight"].shape[0] == sd["transformer.wte.weight"].shape[0] == 65
    assert not torch.equal(sd["lm_head.weight"], sd["transformer.wte.weight"])
    padded = pad_token_rows(sd, config)
    assert padded["lm_head.weight"].shape[0] == padded["transformer.wte.weight"].shape[0] == 128
    rebuilt = build_model(config, padded)
    assert rebuilt.lm_head.weight is not rebuilt.transformer.wte.weight
    idx = torch.randint(0, 65, (2, 8))
    torch.testing.assert_close(rebuilt.eval()(idx, idx)[0], model(idx, idx)[0])
    # untied, a missing lm_head is an error, not a copy of wte
    without = {k: v for k, v in model.state_dict().items() if k != "lm_head.weight"}
    with pytest.raises(UserError, match="missing"):
        build_model(config, without)


def test_muon_keeps_the_untied_lm_head_and_the_norms_on_adamw():
    from gpt_lightning.train.optimizers import is_hidden_matrix

    model = GPT(GPTConfig(**{**TINY, **MODERN}))
    on_muon = {n for n, p in model.named_parameters() if is_hidden_matrix(n, p)}
    assert "lm_head.weight" not in on_muon and "transformer.wte.weight" not in on_muon
    assert not any("norm" in n or "ln_" in n for n in on_muon)
    assert {n.split(".", 3)[-1] for n in on_muon} == {"attn.c_attn.weight", "attn.c_proj.weight"} | {
        "mlp.c_fc.weight",
        "mlp.c_proj.weight",
    }


def test_build_model_refuses_a_tensor_left_on_the_meta_device(monkeypatch):
    """A module that keeps a tensor outside its state dict (a RoPE table as a non-persistent buffer) would stay
    on the meta device after build_model's assign: it fails there, loudly."""
    from gpt_lightning import model as model_module

    original = model_module.Rotary.__init__

    def with_buffer(self, head_size, base):
        original(self, head_size, base)
        self.register_buffer("table", torch.zeros(4), persistent=False)

    monkeypatch.setattr(model_module.Rotary, "__init__", with_buffer)
    config = GPTConfig(**{**TINY, "rope": True})
    with pytest.raises(RuntimeError, match="meta device"):
        build_model(config, GPT(config).state_dict())


@pytest.mark.parametrize("options", [dict(rope=True), dict(MODERN, logit_softcap=10.0), dict(mlp="relu2")])
def test_greedy_with_the_kv_cache_equals_without_past_block_size(options):
    model = perturbed(GPTConfig(**{**TINY, **options}))
    prompt = torch.randint(0, 65, (2, 5))
    n = model.config.block_size + 8
    torch.testing.assert_close(
        model.generate(prompt, n, temperature=0, kv_cache=True),
        model.generate(prompt, n, temperature=0, kv_cache=False),
    )


def test_logit_softcap_bounds_the_logits():
    model = perturbed(GPTConfig(**{**TINY, "logit_softcap": 2.0, "pad_vocab_multiple": 8}))
    with torch.no_grad():
        model.lm_head.weight.mul_(100)
        logits = model(torch.randint(0, 65, (1, 8)), torch.randint(0, 65, (1, 8)))[0]
    assert logits[..., :65].abs().max() <= 2.0 and logits[..., 65:].eq(float("-inf")).all()


def test_hf_formats_cover_the_combinations_they_claim():
    assert [f.name for f in HF_FORMATS] == ["hf (GPT-2)", "hf (Llama)", "hf (Qwen3)"]
    assert choose_format(GPTConfig(**{**TINY, **LLAMA}), HF_FORMATS, "hf").name == "hf (Llama)"
    assert choose_format(GPTConfig(**{**TINY, **MODERN}), HF_FORMATS, "hf").name == "hf (Qwen3)"


@pytest.mark.parametrize(
    "bad, message",
    [
        (dict(rope=True, n_embd=12, n_head=4), "head size"),
        (dict(norm="batchnorm"), "norm must be"),
        (dict(mlp="geglu"), "mlp must be"),
        (dict(logit_softcap=0.0), "logit_softcap must be positive"),
        (dict(rope_base=1.0), "rope_base"),
    ],
)
def test_bad_option_values_are_refused(bad, message):
    with pytest.raises(ValueError, match=message):
        GPTConfig(**{**TINY, **bad})


def test_a_run_starts_from_an_exported_qwen3_folder(tmp_path):
    """`--model.init_from` an exported folder: model_for_run takes the architecture from it (options unset), crops
    the context as a run asks, and computes the logits of the model that was exported."""
    from gpt_lightning.weights.load import model_for_run

    config = GPTConfig(**{**TINY, **MODERN})
    model = perturbed(config)
    export_model(config, model.state_dict(), tmp_path, None)
    unset = {f.name: None for f in dataclasses.fields(GPTConfig)}
    started, _, _ = model_for_run({**unset, "block_size": 8}, init_from=str(tmp_path))
    assert started.config == dataclasses.replace(config, block_size=8)
    idx = torch.randint(0, 65, (2, 8))
    with torch.no_grad():
        torch.testing.assert_close(started.eval()(idx, idx)[0], model(idx, idx)[0], atol=1e-6, rtol=1e-6)
    with pytest.raises(UserError, match="--model.mlp=relu2 conflicts"):
        model_for_run({**unset, "mlp": "relu2"}, init_from=str(tmp_path))
