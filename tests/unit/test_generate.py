"""Generation: KV cache exactness, sampling, checkpoints of both tokenizers, the `generate` command line."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from gpt_lightning.weights.state_dict import gpt_state_dict
from gpt_lightning.weights.load import load_checkpoint_model
from gpt_lightning.cli import main
from gpt_lightning.cli.generate import SEPARATOR, generate
from gpt_lightning.generation import Sampling, TextStream, generate_batch, stream_text
from gpt_lightning.model import GPT, GPTConfig, next_token_probs, sample_next_token
from gpt_lightning.tokenizer import CharTokenizer, GPT2Tokenizer

REPO = Path(__file__).resolve().parents[2]
TEXT = "ROMEO:\nBut soft, what light through yonder window breaks?\nIt is the east, and Juliet is the sun.\n" * 30


@pytest.fixture(autouse=True)
def one_torch_thread():
    """These models are tiny: threads gain nothing, and on a busy machine they lose a lot (OpenMP waits)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


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
)
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


def save_checkpoint(path: Path, tokenizer_meta: dict, vocab_size: int, block_size: int = 16) -> Path:
    """A real Lightning checkpoint: one optimizer step of a tiny model through the Trainer, then saved."""
    import lightning as L

    from gpt_lightning.train.module import GPTLightningModule

    module = GPTLightningModule(
        vocab_size=vocab_size, block_size=block_size, n_layer=1, n_head=2, n_embd=16,
        warmup_steps=0, compile=False, tokenizer=tokenizer_meta,
    )
    x = torch.randint(0, vocab_size, (4, block_size + 1))
    loader = torch.utils.data.DataLoader(list(zip(x[:, :-1], x[:, 1:])), batch_size=4)
    trainer = L.Trainer(
        accelerator="cpu", max_steps=1, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False,
    )
    trainer.fit(module, loader)
    trainer.save_checkpoint(path)
    return path


@pytest.fixture(scope="module")
def char_ckpt(tmp_path_factory) -> Path:
    tok = CharTokenizer.from_text(TEXT)
    return save_checkpoint(tmp_path_factory.mktemp("ckpt") / "char.ckpt", tok.to_meta(), tok.vocab_size)


@pytest.fixture(scope="module")
def gpt2_ckpt(tmp_path_factory) -> Path:
    return save_checkpoint(tmp_path_factory.mktemp("ckpt") / "gpt2.ckpt", {"kind": "gpt2", "encoding": "gpt2"}, 50304)


def test_char_checkpoint_loads_the_trained_weights(char_ckpt):
    model, tok = load_checkpoint_model(char_ckpt)
    saved = torch.load(char_ckpt, map_location="cpu", weights_only=True)["state_dict"]
    assert isinstance(tok, CharTokenizer) and tok.chars == sorted(set(TEXT))
    assert not model.training and model.lm_head.weight is model.transformer.wte.weight
    for name, value in model.state_dict().items():
        assert torch.equal(value, saved["model." + name]), name


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


def test_char_checkpoint_generates_from_the_cli(char_ckpt, capsys):
    """The real entry point, streaming 2 samples; the same seed gives the same text, another seed another."""
    args = ["generate", f"--ckpt_path={char_ckpt}", "--prompt=ROMEO:", "--max_new_tokens=30",
            "--num_samples=2", "--temperature=1.0", "--top_k=200", "--top_p=0.95", "--seed=7"]
    main(args)
    first = capsys.readouterr().out
    samples = first.split(f"\n{SEPARATOR}\n")
    assert samples[-1] == "" and len(samples) == 3
    for s in samples[:2]:
        assert s.startswith("ROMEO:") and len(s) == len("ROMEO:") + 30
        assert set(s) <= set(TEXT)
    main(args)
    assert capsys.readouterr().out == first
    main(args[:-1] + ["--seed=8"])
    assert capsys.readouterr().out != first
    # batched (--no_stream) and without the cache: same format
    main(args + ["--no_stream", "--no_kv_cache", "--device=cpu"])
    assert capsys.readouterr().out.count(SEPARATOR) == 2


def test_gpt2_checkpoint_decodes(gpt2_ckpt, tmp_path):
    prompt_file = tmp_path / "prompt.txt"
    prompt_file.write_text("Hello, world — naïve", encoding="utf-8")
    samples = generate(str(gpt2_ckpt), prompt_file=str(prompt_file), max_new_tokens=12, num_samples=2,
                       temperature=1.0, top_k=None, stream=False)
    model, tok = load_checkpoint_model(gpt2_ckpt)
    assert isinstance(tok, GPT2Tokenizer)
    for s in samples:
        assert s.startswith("Hello, world — naïve") and len(s) > len("Hello, world — naïve")
    # streaming gives the same text as decoding the generated ids in one go
    gen = torch.Generator().manual_seed(3)
    ids = model.generate(torch.tensor([tok.encode("Hi")]), 12, temperature=1.0, generator=gen, vocab_size=tok.vocab_size)
    ids = ids[0, 1:].tolist()
    streamed = "".join(stream_text(model, tok, "Hi", 12, sampling=Sampling(temperature=1.0, seed=3)))
    assert streamed == tok.decode(ids)
    # an empty prompt starts at <|endoftext|>
    assert len(generate(str(gpt2_ckpt), prompt="", max_new_tokens=3, temperature=0)) == 1


def test_generate_subprocess_end_to_end(char_ckpt):
    """`python -m gpt_lightning generate` as a user runs it: text on stdout, the rest on stderr."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "gpt_lightning", "generate", "--ckpt_path", str(char_ckpt), "--prompt", "ROMEO:",
         "--max_new_tokens", "20", "--temperature", "0", "--no_kv_cache"],
        capture_output=True, text=True, env=env, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("ROMEO:") and proc.stdout.endswith(f"\n{SEPARATOR}\n")
    assert "tokens/s" in proc.stderr and "KV cache off" in proc.stderr


# ------------------------------------------------------------------ bad input


def run_error(args: list[str], capsys) -> str:
    with pytest.raises(SystemExit) as exc:
        main(["generate", *args])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and "Traceback" not in err
    return err


@pytest.mark.parametrize(
    "extra, words",
    [
        (["--prompt=ROMEO: Ω ß"], ["'Ω'", "'ß'", "vocabulary"]),
        (["--max_new_tokens=0"], ["max_new_tokens", "0"]),
        (["--temperature=-0.5"], ["temperature", "-0.5"]),
        (["--top_k=0"], ["top_k"]),
        (["--top_p=0"], ["top_p", "(0, 1]"]),
        (["--top_p=1.5"], ["top_p", "1.5"]),
    ],
    ids=["unknown_chars", "max_new_tokens", "temperature", "top_k", "top_p_zero", "top_p_big"],
)
def test_bad_arguments_give_one_clear_error(char_ckpt, capsys, extra, words):
    err = run_error([f"--ckpt_path={char_ckpt}", *extra], capsys)
    for w in words:
        assert w in err


def test_missing_or_unreadable_checkpoint(tmp_path, capsys):
    assert "does not exist" in run_error([f"--ckpt_path={tmp_path / 'nope.ckpt'}"], capsys)
    garbage = tmp_path / "garbage.ckpt"
    garbage.write_bytes(b"this is not a checkpoint")
    assert "is not a readable checkpoint" in run_error([f"--ckpt_path={garbage}"], capsys)
    truncated = tmp_path / "truncated.ckpt"
    torch.save({"state_dict": {"w": torch.zeros(1000)}}, truncated)
    truncated.write_bytes(truncated.read_bytes()[:300])
    assert "is not a readable checkpoint" in run_error([f"--ckpt_path={truncated}"], capsys)


# ------------------------------------------------------------------ the training-time samples use the same code


def test_text_sample_callback_writes_generated_text(tmp_path):
    import lightning as L
    from lightning.pytorch.loggers import TensorBoardLogger
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from gpt_lightning.train.callbacks import TextSampleCallback
    from gpt_lightning.errors import UserError
    from gpt_lightning.train.module import GPTLightningModule

    tok = CharTokenizer.from_text(TEXT)
    x = torch.randint(0, tok.vocab_size, (4, 17))
    loader = torch.utils.data.DataLoader(list(zip(x[:, :-1], x[:, 1:])), batch_size=4)

    def fit(prompt: str) -> None:
        module = GPTLightningModule(vocab_size=tok.vocab_size, block_size=16, n_layer=1, n_head=2, n_embd=16,
                                    compile=False, tokenizer=tok.to_meta())
        trainer = L.Trainer(
            accelerator="cpu", max_steps=1, logger=TensorBoardLogger(tmp_path, name="tb", version=0),
            callbacks=[TextSampleCallback(prompt=prompt, max_new_tokens=20)], num_sanity_val_steps=0,
            enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
        )
        trainer.fit(module, loader, loader)

    with pytest.raises(UserError, match="'Ω'"):
        fit("Ω")  # refused before training starts
    fit("ROMEO:")
    events = EventAccumulator(str(tmp_path / "tb" / "version_0"), size_guidance={"tensors": 0}).Reload()
    (sample,) = [t for t in events.Tags()["tensors"] if t.startswith("samples")]
    text = events.Tensors(sample)[0].tensor_proto.string_val[0].decode()
    assert text.startswith("    ROMEO:") and len(text.replace("\n    ", "\n")) == 4 + len("ROMEO:") + 20
