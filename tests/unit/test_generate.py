"""Generation: KV cache exactness, sampling, streaming text, and reading weights that no Trainer wrote (wrapper
prefixes, nanoGPT's ckpt.pt, pretrained names). From real checkpoints and the `generate` command:
train/test_generate_from_checkpoint.py, e2e/test_generate_cli.py."""

from __future__ import annotations

import re

import pytest
import torch

from gpt_lightning.generation import Sampling, TextStream, generate_batch, stream_text
from gpt_lightning.model import GPT, GPTConfig, next_token_probs, sample_next_token
from gpt_lightning.tokenizer import CharTokenizer, GPT2Tokenizer
from gpt_lightning.weights.load import load_checkpoint_model
from gpt_lightning.weights.state_dict import gpt_state_dict

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def lively_model(block_size: int = 16, vocab_size: int = 11, seed: int = 0) -> GPT:
    """A tiny float64 GPT with large random weights: its greedy continuations vary with the context (a
    default-initialised one repeats a single token, which would make cache bugs invisible), and float64
    keeps argmax free of near-ties that rounding could flip."""
    torch.manual_seed(seed)
    model = GPT(GPTConfig(vocab_size=vocab_size, block_size=block_size, n_layer=2, n_head=2, n_embd=16, bias=True))
    for p in model.parameters():
        torch.nn.init.normal_(p, std=0.5)
    return model.double().eval()


# ------------------------------------------------------------------ KV cache exactness


@pytest.mark.parametrize("prompt_len", [5, 16, 25], ids=["shorter", "equal", "longer"])
def test_greedy_with_cache_equals_without(prompt_len):
    """Prompts shorter than, equal to and longer than block_size 16; 40 new tokens run well past it."""
    model = lively_model()
    idx = torch.randint(0, 11, (3, prompt_len), generator=torch.Generator().manual_seed(prompt_len))
    with_cache = model.generate(idx, 40, temperature=0, kv_cache=True)
    without = model.generate(idx, 40, temperature=0, kv_cache=False)
    assert with_cache.shape == (3, prompt_len + 40)
    assert torch.equal(with_cache, without)
    assert len(set(with_cache[:, prompt_len:].flatten().tolist())) > 1  # the test has something to compare
    assert all(block.attn.kv_cache is None for block in model.transformer.h)  # caches are released


def test_cached_logits_match_full_forward():
    """Prefill 6 tokens, then feed one at a time: every step's logits equal the full causal forward's."""
    model = lively_model()
    idx = torch.randint(0, 11, (2, 16), generator=torch.Generator().manual_seed(1))
    full, _ = model(idx, targets=torch.zeros_like(idx))  # (2, 16, vocab): logits at every position
    model._set_kv_cache(2)
    try:
        steps = [model(idx[:, :6])[0]] + [model(idx[:, t : t + 1])[0] for t in range(6, 16)]
    finally:
        model._set_kv_cache(None)
    torch.testing.assert_close(torch.cat(steps, dim=1), full[:, 5:], rtol=1e-10, atol=1e-10)


def test_batched_samples_equal_streamed_ones():
    model = lively_model(vocab_size=65)
    tok = CharTokenizer.from_text("".join(chr(33 + i) for i in range(65)))
    batch = generate_batch(model, tok, "AB", 30, num_samples=2, sampling=Sampling(temperature=0))
    streamed = "".join(stream_text(model, tok, "AB", 30, sampling=Sampling(temperature=0)))
    assert batch == [streamed, streamed]


# ------------------------------------------------------------------ sampling


def test_padded_vocabulary_ids_are_never_drawn():
    """GPT-2 models score 50304 ids, the tokenizer decodes 50257: generation keeps to the tokenizer's."""
    model = lively_model()
    with torch.no_grad():
        model.lm_head.weight[5:] += 3.0  # make the "padding" ids 5..10 the likely ones
    idx = torch.zeros(4, 3, dtype=torch.long)
    free = model.generate(idx, 30, temperature=1.0, generator=torch.Generator().manual_seed(0))[:, 3:]
    kept = model.generate(idx, 30, temperature=1.0, generator=torch.Generator().manual_seed(0), vocab_size=5)[:, 3:]
    assert (free >= 5).any() and (kept < 5).all()


def test_top_k_keeps_exactly_the_k_most_likely_tokens():
    logits = torch.randn(4, 50, generator=torch.Generator().manual_seed(0))
    probs = next_token_probs(logits, temperature=0.7, top_k=5)
    top5 = torch.topk(logits, 5, dim=-1).indices
    for row in range(4):
        support = set(torch.nonzero(probs[row]).flatten().tolist())
        assert support == set(top5[row].tolist())
        expected = torch.softmax(logits[row, top5[row]] / 0.7, dim=-1)
        torch.testing.assert_close(probs[row, top5[row]], expected)


@pytest.mark.parametrize("top_p", [0.3, 0.6, 0.9])
def test_top_p_keeps_the_smallest_set_reaching_p(top_p):
    logits = torch.randn(4, 50, generator=torch.Generator().manual_seed(1)) * 2
    full = torch.softmax(logits, dim=-1)
    probs = next_token_probs(logits, temperature=1.0, top_p=top_p)
    for row in range(4):
        kept = probs[row] > 0
        mass = full[row][kept].sum()
        assert mass >= top_p  # enough mass ...
        assert mass - full[row][kept].min() < top_p  # ... and no token more than needed
        assert full[row][kept].min() >= full[row][~kept].max()  # the most likely ones
        torch.testing.assert_close(probs[row][kept], full[row][kept] / mass)
    # draws respect the support
    draws = sample_next_token(
        logits.repeat(500, 1), temperature=1.0, top_p=top_p, generator=torch.Generator().manual_seed(2)
    ).view(500, 4)
    for row in range(4):
        assert set(draws[:, row].tolist()) <= set(torch.nonzero(probs[row]).flatten().tolist())


@pytest.mark.parametrize(
    "settings, words",
    [({"temperature": -1}, "temperature must be >= 0"), ({"top_k": 0}, "top_k must be at least 1"),
     ({"top_p": 1.5}, "top_p must be in (0, 1]")],
)  # fmt: skip
def test_sampling_settings_are_checked_once_when_built(settings, words):
    from gpt_lightning.errors import UserError
    from gpt_lightning.train.callbacks import TextSampleCallback

    with pytest.raises(UserError, match=re.escape(words)):
        Sampling(**settings)
    if "top_p" not in settings:  # --sample.* builds the same object
        with pytest.raises(UserError, match=re.escape(words)):
            TextSampleCallback(**settings)


def test_sampling_settings_reach_the_model_by_keyword():
    model = lively_model(vocab_size=65)
    idx = torch.tensor([[1, 2]])
    with pytest.raises(TypeError):
        next(model.generate_tokens(idx, 1, 0.0))  # a positional temperature is refused
    seeded = Sampling(temperature=1.0, top_k=5, kv_cache=False, seed=7)
    tok = CharTokenizer.from_text("".join(chr(33 + i) for i in range(65)))
    gen = torch.Generator().manual_seed(7)
    direct = model.generate(idx, 10, temperature=1.0, top_k=5, kv_cache=False, generator=gen)[0, 2:].tolist()
    prompt = tok.decode([1, 2])
    assert next(stream_text(model, tok, prompt, 10, sampling=seeded)) == tok.decode(direct[:1])
    assert generate_batch(model, tok, prompt, 10, 1, sampling=seeded) == [tok.decode(direct)]


def test_top_k_then_top_p_and_temperature_zero_is_argmax():
    logits = torch.randn(3, 40, generator=torch.Generator().manual_seed(3))
    probs = next_token_probs(logits, temperature=1.0, top_k=10, top_p=0.5)
    assert ((probs > 0).sum(dim=-1) <= 10).all()
    assert torch.equal(sample_next_token(logits, temperature=0), logits.argmax(dim=-1, keepdim=True))


# ------------------------------------------------------------------ tokenizers and streaming


def test_text_stream_decodes_characters_split_over_bpe_tokens():
    tok = GPT2Tokenizer()
    text = "naïve café 😀🎉 ✓ 日本語"
    ids = tok.encode(text)
    stream = TextStream(tok)
    pieces = [stream.push([i]) for i in ids] + [stream.flush()]
    assert "".join(pieces) == text
    assert not any("\ufffd" in p for p in pieces)
    assert len(ids) > len(text.split())  # some characters do span several tokens
    # an unfinished character at the end comes out as U+FFFD, as decode() gives it
    emoji = tok.encode("😀")
    assert len(emoji) > 1
    stream = TextStream(tok)
    assert stream.push(emoji[:1]) == "" and stream.flush() == tok.decode(emoji[:1])


# ------------------------------------------------------------------ checkpoints


def test_state_dict_prefixes_of_wrappers_are_stripped():
    w = torch.zeros(2)
    wrapped = {
        "module.model._orig_mod.transformer.ln_f.weight": w,
        "_orig_mod.lm_head.weight": w,
        "transformer.h.0.attn.bias": w,  # nanoGPT's causal mask buffer
        "val_loss.mean_value": w,
    }
    assert set(gpt_state_dict(wrapped)) == {"transformer.ln_f.weight", "lm_head.weight", "transformer.wte.weight"}


def test_nanogpt_checkpoint_loads(tmp_path):
    """nanoGPT's own ckpt.pt: model_args + a compiled model's state dict with the causal-mask buffers."""
    model = lively_model(vocab_size=50304).float()
    args = dict(n_layer=2, n_head=2, n_embd=16, block_size=16, bias=True, vocab_size=50304, dropout=0.0)
    sd = {f"_orig_mod.{k}": v for k, v in model.state_dict().items()}
    sd.update({f"_orig_mod.transformer.h.{i}.attn.bias": torch.ones(1, 1, 16, 16) for i in range(2)})
    torch.save({"model_args": args, "model": sd, "iter_num": 5}, tmp_path / "ckpt.pt")
    loaded, tok = load_checkpoint_model(tmp_path / "ckpt.pt")
    assert isinstance(tok, GPT2Tokenizer)
    idx = torch.randint(0, 50257, (1, 8))
    torch.testing.assert_close(loaded(idx)[0], model(idx)[0])


def test_pretrained_weights_go_through_the_hf_reader(monkeypatch):
    """A name that is not a .ckpt (e.g. `gpt2`) is read by gpt_lightning.weights.hf.load_pretrained."""

    model = lively_model(vocab_size=50304).float()
    import gpt_lightning.weights.load as load

    monkeypatch.setattr(
        load, "load_pretrained", lambda name: (model.config, model.state_dict(), {"kind": "gpt2", "encoding": "gpt2"})
    )
    loaded, tok = load_checkpoint_model("gpt2")
    assert isinstance(tok, GPT2Tokenizer)
    assert torch.equal(loaded.lm_head.weight, model.lm_head.weight)
