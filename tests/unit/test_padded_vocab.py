"""The padded vocabulary: GPT-2's 50257 ids in a 50304-row token table (a multiple of 64, nanoGPT's choice), with
the padding ids masked so that nothing but speed changes."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from gpt_lightning.model import GPT, GPTConfig, num_params

SMALL = dict(n_layer=2, n_head=2, n_embd=32, block_size=16, dropout=0.0)


def padded_and_plain(vocab: int = 100, multiple: int = 64) -> tuple[GPT, GPT]:
    """A padded GPT and an unpadded one with the same weights on the real ids."""
    torch.manual_seed(0)
    padded = GPT(GPTConfig(vocab_size=vocab, pad_vocab_multiple=multiple, **SMALL))
    plain = GPT(GPTConfig(vocab_size=vocab, **SMALL))
    sd = padded.state_dict()
    sd = {k: v[:vocab] if k in ("transformer.wte.weight", "lm_head.weight") else v for k, v in sd.items()}
    plain.load_state_dict(sd)
    return padded, plain


def test_rows_are_rounded_up_and_gpt2_gets_nanogpts_50304():
    config = GPTConfig(vocab_size=50257, pad_vocab_multiple=64)
    assert config.padded_vocab_size == 50304
    assert GPTConfig(vocab_size=65, pad_vocab_multiple=1).padded_vocab_size == 65
    assert GPTConfig(vocab_size=128, pad_vocab_multiple=64).padded_vocab_size == 128
    # the same parameters as nanoGPT's GPT-2 124M (vocab_size 50304), counted from the config and from the tensors
    nanogpt = GPTConfig(vocab_size=50304)
    assert num_params(config) == num_params(nanogpt)
    with torch.device("meta"):
        assert GPT(config).get_num_params() == num_params(config)
        assert GPT(config).lm_head.weight.shape == (50304, 768)
    with pytest.raises(ValueError, match="pad_vocab_multiple"):
        GPTConfig(pad_vocab_multiple=0)


def test_padding_changes_no_loss_logit_or_gradient_on_real_ids():
    padded, plain = padded_and_plain()
    idx = torch.randint(0, 100, (4, 16))
    targets = torch.randint(0, 100, (4, 16))
    logits_p, loss_p = padded(idx, targets)
    logits_u, loss_u = plain(idx, targets)
    assert logits_p.shape[-1] == 128 and torch.isneginf(logits_p[..., 100:]).all()
    torch.testing.assert_close(logits_p[..., :100], logits_u)
    torch.testing.assert_close(loss_p, loss_u)
    loss_p.backward()
    loss_u.backward()
    grad = padded.lm_head.weight.grad
    assert (grad[100:] == 0).all()  # padding rows learn nothing (only weight decay touches them)
    torch.testing.assert_close(grad[:100], plain.lm_head.weight.grad)
    # inference (the last position only) is masked too
    last, _ = padded(idx)
    assert torch.isneginf(last[..., 100:]).all()


def test_padding_ids_are_never_generated_even_when_the_sampler_is_not_told_the_vocabulary():
    padded, _ = padded_and_plain()
    with torch.no_grad():
        padded.lm_head.weight[100:] = 50.0  # unmasked, these rows would win every draw
    idx = torch.zeros((8, 1), dtype=torch.long)
    for temperature in (0.0, 1.0):
        out = padded.generate(idx, 10, temperature=temperature)  # no vocab_size: the model's mask alone
        assert int(out.max()) < 100


def test_old_configs_and_checkpoints_keep_their_rows():
    # a config without the field (every checkpoint written before it existed) builds exactly its vocab_size rows
    fields = {f.name: f.default for f in dataclasses.fields(GPTConfig)}
    assert fields["pad_vocab_multiple"] == 1
    assert GPTConfig(vocab_size=50257).padded_vocab_size == 50257


# ---------------------------------------------------------------- weights in and out


def test_export_writes_an_unpadded_gpt2_that_transformers_loads_with_our_logits(tmp_path):
    transformers = pytest.importorskip("transformers")
    from gpt_lightning.weights.hf import export_model

    padded, _ = padded_and_plain()
    padded.eval()
    export_model(padded.config, padded.state_dict(), tmp_path / "hf")
    hf = transformers.GPT2LMHeadModel.from_pretrained(tmp_path / "hf").eval()
    assert hf.config.vocab_size == 100 and hf.transformer.wte.weight.shape == (100, 32)
    idx = torch.randint(0, 100, (2, 16))
    with torch.no_grad():
        ours, _ = padded(idx, idx)
        theirs = hf(idx).logits
    torch.testing.assert_close(theirs, ours[..., :100], atol=1e-5, rtol=1e-5)


def test_a_pretrained_unpadded_model_is_padded_on_import_and_computes_the_same():
    from gpt_lightning.weights.load import fit_pretrained
    from gpt_lightning.weights.state_dict import build_model

    _, plain = padded_and_plain()
    sd = plain.state_dict()
    config, sd, _ = fit_pretrained(plain.config, sd, None, "test", {"vocab_size": 100, "pad_vocab_multiple": 64}, None)
    assert config.padded_vocab_size == 128 and sd["transformer.wte.weight"].shape == (128, 32)
    model = build_model(config, sd).eval()
    idx = torch.randint(0, 100, (2, 16))
    with torch.no_grad():
        ours, loss = model(idx, idx)
        reference, reference_loss = plain.eval()(idx, idx)
    torch.testing.assert_close(ours[..., :100], reference)
    torch.testing.assert_close(loss, reference_loss)


def test_nanogpt_export_drops_the_padding_rows_and_their_adam_moments():
    from gpt_lightning.weights.nanogpt import to_nanogpt_checkpoint

    padded, plain = padded_and_plain()
    params = list(padded.parameters())
    adam = torch.optim.AdamW(  # grouped as configure_optimizers groups them: matrices, then the rest
        [{"params": [p for p in params if p.dim() >= 2]}, {"params": [p for p in params if p.dim() < 2]}]
    )
    padded(torch.zeros((1, 4), dtype=torch.long), torch.zeros((1, 4), dtype=torch.long))[1].backward()
    adam.step()
    ckpt = to_nanogpt_checkpoint(padded.config, padded.state_dict(), dataset="x", optimizer_state=adam.state_dict())
    assert ckpt["model_args"]["vocab_size"] == 100
    assert ckpt["model"]["transformer.wte.weight"].shape == (100, 32)
    moments = sorted(tuple(s["exp_avg"].shape) for s in ckpt["optimizer"]["state"].values())
    assert moments == sorted(tuple(p.shape) for p in plain.parameters())  # those of the unpadded model
