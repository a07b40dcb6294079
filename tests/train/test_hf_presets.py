"""The GPT-2 presets through the CLI in this process, on a random one-layer GPT-2 saved by transformers:
eval_gpt2 gives transformers' val loss; finetune_shakespeare fits (compiled), exports and generates."""

from __future__ import annotations

import pytest
import torch

from gpt_lightning.cli import main
from gpt_lightning.tokenizer import GPT2Tokenizer
from gpt_lightning.train.module import GPTLightningModule
from gpt_lightning.weights.checkpoint import read_gpt_checkpoint
from helpers import REPO, hf_logits, our_logits, random_hf_model
from helpers import SHARED_TINYSHAKESPEARE as SHAKESPEARE

transformers = pytest.importorskip("transformers")  # the hf extra (part of dev)
pytestmark = pytest.mark.slow  # fits, validates and exports through the CLI: tens of seconds

CONFIGS = REPO / "configs"


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
    from gpt_lightning.data.bins import read_meta
    from gpt_lightning.data.datamodule import ValWindows

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
    config, sd, tokenizer, _ = read_gpt_checkpoint(tmp_path / "old.ckpt")
    assert "transformer.wte.weight" in sd and tokenizer["kind"] == "gpt2"
    module = GPTLightningModule.load_from_checkpoint(tmp_path / "old.ckpt", map_location="cpu")
    ours = our_logits(module.model.eval(), idx)  # 50304 columns: GPT-2's 50257 padded on import, the rest -inf
    assert ours.shape[-1] == 50304 and torch.isneginf(ours[..., 50257:]).all()
    torch.testing.assert_close(ours[..., :50257], hf_logits(hf, idx), atol=1e-5, rtol=0)

    # and the imported checkpoint generates, the same tokens as transformers' greedy decoding
    from gpt_lightning.generation import Sampling, generate_text

    tok = GPT2Tokenizer()
    prompt = "ROMEO:"
    text = generate_text(module.model, tok, prompt, 8, sampling=Sampling(temperature=0))
    prompt_ids = torch.tensor([tok.encode(prompt)])
    with torch.no_grad():
        expected = hf.generate(prompt_ids, max_new_tokens=8, do_sample=False, pad_token_id=0)[0, prompt_ids.size(1) :]
    assert text == prompt + tok.decode(expected.tolist())
