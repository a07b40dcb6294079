import math

import pytest
import torch

from gpt_lightning.model import GPT, GPTConfig

BABY = dict(vocab_size=65, block_size=256, n_layer=6, n_head=6, n_embd=384, bias=False)
GPT2_124M = dict(vocab_size=50257, block_size=1024, n_layer=12, n_head=12, n_embd=768, bias=True)


def tiny(**kw) -> GPT:
    cfg = dict(vocab_size=11, block_size=8, n_layer=2, n_head=2, n_embd=16, bias=True)
    cfg.update(kw)
    torch.manual_seed(0)
    return GPT(GPTConfig(**cfg))


@pytest.mark.slow  # builds GPT-2 124M
def test_parameter_counts_of_the_baby_gpt_and_gpt2_124m():
    baby = GPT(GPTConfig(**BABY))
    assert sum(p.numel() for p in baby.parameters()) == 10_745_088
    gpt2 = GPT(GPTConfig(**GPT2_124M))
    assert sum(p.numel() for p in gpt2.parameters()) == 124_439_808
    # nanoGPT reports the count without the position table
    assert gpt2.get_num_params() == 124_439_808 - 1024 * 768


def test_hf_gpt2_parameter_names():
    names = set(tiny().state_dict())
    for expected in [
        "transformer.wte.weight",
        "transformer.wpe.weight",
        "transformer.h.0.ln_1.weight",
        "transformer.h.0.attn.c_attn.weight",
        "transformer.h.0.attn.c_proj.bias",
        "transformer.h.1.ln_2.bias",
        "transformer.h.1.mlp.c_fc.weight",
        "transformer.h.1.mlp.c_proj.weight",
        "transformer.ln_f.weight",
        "lm_head.weight",
    ]:
        assert expected in names


def test_weight_tying_shares_one_tensor():
    model = tiny()
    assert model.lm_head.weight is model.transformer.wte.weight
    with torch.no_grad():
        model.lm_head.weight[0, 0] = 123.0
    assert model.transformer.wte.weight[0, 0] == 123.0


def test_gpt2_init_statistics():
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=512, block_size=64, n_layer=4, n_head=4, n_embd=256))
    std = lambda t: t.float().std().item()  # noqa: E731
    assert std(model.transformer.wte.weight) == pytest.approx(0.02, rel=0.05)
    assert std(model.transformer.h[0].attn.c_attn.weight) == pytest.approx(0.02, rel=0.05)
    # residual projections are scaled down by sqrt(2 * n_layer)
    assert std(model.transformer.h[0].mlp.c_proj.weight) == pytest.approx(0.02 / math.sqrt(8), rel=0.05)
    assert std(model.transformer.h[3].attn.c_proj.weight) == pytest.approx(0.02 / math.sqrt(8), rel=0.05)
    assert torch.all(model.transformer.h[0].attn.c_attn.bias == 0)
    assert torch.all(model.transformer.h[0].ln_1.weight == 1)


def test_forward_shapes_with_and_without_targets():
    model = tiny()
    idx = torch.randint(0, 11, (3, 8))
    logits, loss = model(idx, idx)
    assert logits.shape == (3, 8, 11) and loss.ndim == 0
    logits, loss = model(idx)
    assert logits.shape == (3, 1, 11) and loss is None
    # the last-position logits are those of the full forward
    full, _ = model(idx, idx)
    torch.testing.assert_close(logits[:, 0], full[:, -1])


def test_loss_at_init_is_near_uniform_and_ignores_minus_one():
    model = tiny(vocab_size=64)
    idx = torch.randint(0, 64, (4, 8))
    _, loss = model(idx, idx)
    assert abs(loss.item() - math.log(64)) < 0.3
    targets = idx.clone()
    targets[:, 4:] = -1
    _, masked = model(idx, targets)
    logits, _ = model(idx, idx)
    expected = torch.nn.functional.cross_entropy(logits[:, :4].reshape(-1, 64), idx[:, :4].reshape(-1))
    torch.testing.assert_close(masked, expected)


def test_causality_future_tokens_do_not_change_past_logits():
    model = tiny().eval()
    a = torch.randint(0, 11, (1, 8))
    b = a.clone()
    b[0, 5:] = (b[0, 5:] + 1) % 11
    la, _ = model(a, a)
    lb, _ = model(b, b)
    torch.testing.assert_close(la[:, :5], lb[:, :5])
    assert not torch.allclose(la[:, 5:], lb[:, 5:])


def test_manual_attention_fallback_matches_sdpa():
    model = tiny().eval()
    idx = torch.randint(0, 11, (2, 8))
    expected, _ = model(idx, idx)
    for block in model.transformer.h:
        attn = block.attn
        attn.flash = False
        attn.register_buffer("mask", torch.tril(torch.ones(8, 8, dtype=torch.bool)).view(1, 1, 8, 8), persistent=False)
    got, _ = model(idx, idx)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


def test_clear_errors_for_bad_shapes():
    with pytest.raises(ValueError, match="divisible by n_head"):
        GPTConfig(n_embd=100, n_head=3)
    model = tiny()
    with pytest.raises(ValueError, match="block_size is 8"):
        model(torch.zeros(1, 9, dtype=torch.long))


def test_crop_block_size():
    model = tiny()
    model.crop_block_size(4)
    assert model.transformer.wpe.weight.shape == (4, 16)
    logits, _ = model(torch.zeros(2, 4, dtype=torch.long))
    assert logits.shape == (2, 1, 11)
    with pytest.raises(ValueError):
        model(torch.zeros(1, 5, dtype=torch.long))
