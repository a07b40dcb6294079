"""nanoGPT's own files: ckpt.pt and meta.pkl in (generate, export, init_from), ckpt.pt out, and a nanoGPT run
continued. The fixtures (nanogpt_helpers.py) are written as nanoGPT's train.py and prepare.py write them."""

from __future__ import annotations

import math
import os
import pickle
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch
from nanogpt_helpers import (
    BLOCK,
    CHARS,
    SCHEDULE,
    crafted_meta_pkl,
    nanogpt_optimizer,
    write_meta_pkl_as_nanogpt,
    write_nanogpt_data,
    write_nanogpt_run,
)

from gpt_lightning.cli.export import export
from gpt_lightning.cli.generate import generate
from gpt_lightning.data.datamodule import TokenBinDataModule
from gpt_lightning.errors import UserError
from gpt_lightning.meta_pkl import read_meta_pkl
from gpt_lightning.model import GPT, GPTConfig
from gpt_lightning.train.module import GPTLightningModule
from gpt_lightning.weights.load import load_checkpoint_model

# ------------------------------------------------------------------ greedy output equals sample.py --top_k=1


def greedy_reference(model: GPT, ids: list[int], n: int) -> list[int]:
    """What nanoGPT's generate does with top_k=1: crop to block_size, forward, take the most likely token."""
    idx = torch.tensor([ids])
    with torch.no_grad():
        for _ in range(n):
            logits, _ = model(idx[:, -model.config.block_size :])
            idx = torch.cat([idx, logits[:, -1, :].argmax(-1, keepdim=True)], dim=1)
    return idx[0].tolist()


@pytest.mark.parametrize("compiled", [False, True], ids=["plain", "compiled"])
@pytest.mark.parametrize("mask_buffers", [False, True], ids=["flash", "mask"])
@pytest.mark.parametrize("vocab", ["char", pytest.param("gpt2", marks=pytest.mark.slow)])  # gpt2: 50k-token tables
def test_greedy_generate_equals_a_direct_greedy_loop(tmp_path, monkeypatch, vocab, compiled, mask_buffers):
    """Run from the folder nanoGPT ran in: ckpt under out-*/, meta.pkl (chars only) under data/<dataset>/."""
    monkeypatch.chdir(tmp_path)
    ckpt, model, _ = write_nanogpt_run(tmp_path / "out-run", vocab, compiled, mask_buffers)
    prompt, n = "ROMEO: speak", 40  # past block_size 16: the context is cropped, as sample.py crops it
    if vocab == "char":
        write_meta_pkl_as_nanogpt(tmp_path / "data" / "shakespeare_char")
        prompt = "All: speak"
        encode, decode = (lambda s: [CHARS.index(c) for c in s]), (lambda ids: "".join(CHARS[i] for i in ids))
    else:
        import tiktoken

        from gpt_lightning.tokenizer import seed_tiktoken_cache

        seed_tiktoken_cache()
        enc = tiktoken.get_encoding("gpt2")
        encode, decode = (lambda s: enc.encode(s, allowed_special={"<|endoftext|>"})), enc.decode
    expected = decode(greedy_reference(model, encode(prompt), n))
    greedy = generate(str(ckpt), prompt=prompt, max_new_tokens=n, temperature=0.0, top_k=None, device="cpu")
    assert greedy == [expected]
    # top_k=1 at sample.py's default temperature is the same choice; also as a batch (--no_stream)
    top1 = generate(str(ckpt), prompt=prompt, max_new_tokens=n, temperature=0.8, top_k=1, device="cpu", stream=False)
    assert top1 == [expected]


def test_meta_pkl_is_found_beside_the_checkpoint_or_given(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no data/ here
    ckpt, model, _ = write_nanogpt_run(tmp_path / "out", "char", False, False)
    with pytest.raises(UserError) as e:
        load_checkpoint_model(ckpt)
    message = str(e.value)
    assert os.path.join("data", "shakespeare_char", "meta.pkl") in message  # where sample.py looks
    assert str(tmp_path / "out" / "meta.pkl") in message  # beside the checkpoint
    assert "--meta" in message
    elsewhere = write_meta_pkl_as_nanogpt(tmp_path / "elsewhere")
    for meta in (elsewhere, elsewhere.parent):  # the file, or the data folder holding it
        _, tok = load_checkpoint_model(ckpt, meta=meta)
        assert tok.chars == CHARS
    write_meta_pkl_as_nanogpt(tmp_path / "out")
    _, tok = load_checkpoint_model(ckpt)
    assert tok.chars == CHARS


# ------------------------------------------------------------------ meta.pkl runs no code


def test_a_crafted_meta_pkl_runs_no_code_through_any_command(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    marker = tmp_path / "pwned"
    data = tmp_path / "data" / "shakespeare_char"
    write_nanogpt_data(data, "char")
    crafted_meta_pkl(data, marker)
    ckpt, _, _ = write_nanogpt_run(tmp_path / "out", "char", False, False)
    attempts = {
        "generate (found as sample.py finds it)": lambda: generate(str(ckpt), prompt="a", max_new_tokens=2),
        "generate --meta": lambda: generate(str(ckpt), meta=str(data / "meta.pkl"), prompt="a", max_new_tokens=2),
        "export": lambda: export(ckpt_path=ckpt, out=tmp_path / "hf"),
        "export --format nanogpt": lambda: export(ckpt_path=ckpt, out=tmp_path / "n", format="nanogpt"),
        "fit --data.data_dir": lambda: TokenBinDataModule(data_dir=data, block_size=BLOCK).vocab_size,
        "fit --model.init_from (found as sample.py finds it)": lambda: GPTLightningModule(init_from=str(ckpt)),
        "read_meta_pkl": lambda: read_meta_pkl(data / "meta.pkl"),
    }
    for what, attempt in attempts.items():
        with pytest.raises(UserError, match="posix.system|nt.system") as e:
            attempt()
        assert "\n" not in str(e.value), what
    assert not marker.exists()
    assert pickle.loads((data / "meta.pkl").read_bytes()) is not None and marker.exists()  # the payload is real


@pytest.mark.parametrize(
    "value",
    [1.5, None, b"bytes", np.int64(3)],
    ids=["float", "None", "bytes", "numpy"],
)
def test_meta_pkl_refuses_anything_but_containers_str_and_int(tmp_path, value):
    path = tmp_path / "meta.pkl"
    path.write_bytes(pickle.dumps({"vocab_size": 1, "itos": {0: "a"}, "stoi": {"a": 0}, "extra": [value]}))
    with pytest.raises(UserError) as e:
        read_meta_pkl(path)
    assert "\n" not in str(e.value)


def looping_meta_pkls() -> dict[str, bytes]:
    """meta.pkl files that made every command that reads one spin or swell (issue 23)."""
    loop: list = []
    loop.append(loop)
    nested: list = []
    for _ in range(60):
        nested = [nested, nested]  # 60 levels, 2**60 paths, about 1 KB pickled
    return {
        "a list that holds itself": pickle.dumps({"vocab_size": 1, "itos": {0: "a"}, "stoi": {"a": 0}, "x": loop}),
        "b = [b, b] 60 deep": pickle.dumps({"vocab_size": 1, "itos": {0: "a"}, "stoi": {"a": 0}, "x": nested}),
        "a dict that holds itself as itos": b"}q\x00(X\x04\x00\x00\x00itosq\x00h\x00u.",
        "memo index 2**28 (9 bytes)": b"\x80\x02]r\x00\x00\x00\x10.",
        "2 MB": pickle.dumps({"vocab_size": 1, "itos": {0: "a"}, "stoi": {"a": 0}, "x": "y" * (2 << 20)}),
    }


@pytest.mark.parametrize("name", list(looping_meta_pkls()))
def test_a_looping_or_swollen_meta_pkl_is_refused_at_once_in_one_sentence(tmp_path, name):
    import resource
    import time

    path = tmp_path / "meta.pkl"
    path.write_bytes(looping_meta_pkls()[name])
    peak_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    with pytest.raises(UserError) as e:
        read_meta_pkl(path)
    assert time.perf_counter() - start < 2
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak_before < 200_000  # KB: no gigabyte memo
    assert "\n" not in str(e.value) and str(e.value).startswith(str(path))


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_meta_pkl_of_every_protocol_reads(tmp_path, protocol):
    meta = {"vocab_size": len(CHARS), "itos": dict(enumerate(CHARS)), "stoi": {c: i for i, c in enumerate(CHARS)}}
    (tmp_path / "meta.pkl").write_bytes(pickle.dumps(meta, protocol=protocol))
    assert read_meta_pkl(tmp_path / "meta.pkl") == meta


# ------------------------------------------------------------------ export --format nanogpt


def sample_py_load(ckpt_path: Path) -> GPT:
    """What nanoGPT's sample.py does with a ckpt.pt (with our GPT, whose names and GPTConfig fields are nanoGPT's)."""
    checkpoint = torch.load(ckpt_path, map_location="cpu", weights_only=True)
    model = GPT(GPTConfig(**checkpoint["model_args"]))
    state_dict = checkpoint["model"]
    for k in list(state_dict):
        if k.startswith("_orig_mod."):
            state_dict[k[len("_orig_mod.") :]] = state_dict.pop(k)
    model.load_state_dict(state_dict)  # strict, as nanoGPT's
    return model.eval()


def lightning_checkpoint(path: Path, steps: int = 2) -> tuple[Path, GPTLightningModule]:
    """A checkpoint written by the Trainer after a few steps of a tiny char model."""
    module = GPTLightningModule(
        vocab_size=len(CHARS),
        block_size=BLOCK,
        n_layer=2,
        n_head=2,
        n_embd=16,
        bias=False,
        warmup_steps=0,
        compile=False,
        tokenizer={"kind": "char", "chars": CHARS},
    )
    x = torch.randint(0, len(CHARS), (4, BLOCK + 1))
    loader = torch.utils.data.DataLoader(list(zip(x[:, :-1], x[:, 1:])), batch_size=4)
    trainer = L.Trainer(
        accelerator="cpu",
        max_steps=steps,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(module, loader)
    trainer.save_checkpoint(path)
    return path, module


def test_export_nanogpt_round_trip(tmp_path):
    ckpt, module = lightning_checkpoint(tmp_path / "last.ckpt")
    out = export(ckpt_path=ckpt, out=tmp_path / "out-export", format="nanogpt", dataset="tiny_char")
    saved = torch.load(out / "ckpt.pt", map_location="cpu", weights_only=True)
    assert set(saved) == {"model", "optimizer", "model_args", "iter_num", "best_val_loss", "config"}
    assert set(saved["model_args"]) == {"n_layer", "n_head", "n_embd", "block_size", "bias", "vocab_size", "dropout"}
    assert saved["iter_num"] == 2 and saved["config"]["dataset"] == "tiny_char"
    assert not any(k.startswith(("model.", "_orig_mod.")) for k in saved["model"])
    # the same logits through sample.py's loading and through ours
    idx = torch.randint(0, len(CHARS), (2, BLOCK))
    expected = module.model.eval()(idx, idx)[0]
    torch.testing.assert_close(sample_py_load(out / "ckpt.pt")(idx, idx)[0], expected)
    torch.testing.assert_close(load_checkpoint_model(out / "ckpt.pt")[0](idx, idx)[0], expected)
    assert read_meta_pkl(out / "meta.pkl")["itos"] == dict(enumerate(CHARS))
    # AdamW state lands on the same tensors in nanoGPT's numbering: decay group first, named_parameters order
    lightning_state = torch.load(ckpt, weights_only=True)["optimizer_states"][0]["state"]
    ours = list(module.model.named_parameters())
    our_order = [n for n, p in ours if p.dim() >= 2] + [n for n, p in ours if p.dim() < 2]
    theirs = dict(sample_py_load(out / "ckpt.pt").named_parameters())
    their_order = [n for n, p in theirs.items() if p.dim() >= 2] + [n for n, p in theirs.items() if p.dim() < 2]
    for name in ("transformer.h.1.mlp.c_fc.weight", "transformer.ln_f.weight", "transformer.wte.weight"):
        torch.testing.assert_close(
            saved["optimizer"]["state"][their_order.index(name)]["exp_avg"],
            lightning_state[our_order.index(name)]["exp_avg"],
        )
    # and nanoGPT's train.py --init_from=resume can load it into its optimizer
    nanogpt_optimizer(sample_py_load(out / "ckpt.pt"), steps=0).load_state_dict(saved["optimizer"])


@pytest.mark.parametrize("compiled", [False, True], ids=["plain", "compiled"])
def test_export_from_a_nanogpt_checkpoint_strips_prefixes_and_buffers(tmp_path, compiled):
    ckpt, model, original = write_nanogpt_run(tmp_path / "out", "char", compiled, True)
    write_meta_pkl_as_nanogpt(tmp_path / "out")
    out = export(ckpt_path=ckpt, out=tmp_path / "clean", format="nanogpt")
    saved = torch.load(out / "ckpt.pt", weights_only=True)
    assert set(saved["model"]) == set(model.state_dict())
    assert saved["iter_num"] == original["iter_num"] and saved["config"]["dataset"] == "shakespeare_char"
    idx = torch.randint(0, len(CHARS), (1, BLOCK))
    torch.testing.assert_close(sample_py_load(out / "ckpt.pt")(idx)[0], model(idx)[0])


# ------------------------------------------------------------------ continuing a nanoGPT run


def nanogpt_get_lr(it: int) -> float:
    """nanoGPT train.py's get_lr with SCHEDULE's values."""
    lr, min_lr = SCHEDULE["learning_rate"], SCHEDULE["min_lr"]
    warmup, decay = SCHEDULE["warmup_iters"], SCHEDULE["lr_decay_iters"]
    if it < warmup:
        return lr * (it + 1) / (warmup + 1)
    if it > decay:
        return min_lr
    ratio = (it - warmup) / (decay - warmup)
    return min_lr + 0.5 * (1.0 + math.cos(math.pi * ratio)) * (lr - min_lr)


class Probe(L.Callback):
    """Step, LR and one tensor's AdamW state as each optimizer step starts."""

    def __init__(self, name: str) -> None:
        self.name, self.seen = name, []

    def on_before_optimizer_step(self, trainer, module, optimizer) -> None:
        param = dict(module.model.named_parameters())[self.name]
        state = optimizer.state[param]
        self.seen.append((trainer.global_step, optimizer.param_groups[0]["lr"], state["exp_avg"].clone()))


def test_init_optimizer_state_continues_a_nanogpt_run(tmp_path):
    data = write_nanogpt_data(tmp_path / "data" / "shakespeare_char", "char")
    ckpt, _, original = write_nanogpt_run(tmp_path / "out", "char", True, True, iter_num=30)
    dm = TokenBinDataModule(data_dir=data, block_size=BLOCK, batch_size=4, val_batches=2)
    module = GPTLightningModule(
        vocab_size=dm.vocab_size,
        block_size=BLOCK,
        tokenizer=dm.tokenizer_meta,
        init_from=str(ckpt),
        init_optimizer_state=True,
        compile=False,
        learning_rate=SCHEDULE["learning_rate"],
        min_lr=SCHEDULE["min_lr"],
        warmup_steps=SCHEDULE["warmup_iters"],
        lr_decay_steps=SCHEDULE["lr_decay_iters"],
        beta2=SCHEDULE["beta2"],
    )
    name = "transformer.h.1.attn.c_attn.weight"
    probe = Probe(name)
    trainer = L.Trainer(
        accelerator="cpu",
        max_steps=33,
        logger=False,
        enable_checkpointing=False,
        callbacks=[probe],
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
    )
    trainer.fit(module, dm)
    # nanoGPT numbers its AdamW state: the decay group (dim >= 2) then the rest, each in named_parameters order
    params = [
        (k.removeprefix("_orig_mod."), v)
        for k, v in original["model"].items()
        if not k.endswith(".attn.bias") and "lm_head" not in k
    ]
    order = [k for k, v in params if v.dim() >= 2] + [k for k, v in params if v.dim() < 2]
    file_state = original["optimizer"]["state"][order.index(name)]
    steps = [s for s, _, _ in probe.seen]
    assert steps == [30, 31, 32] and trainer.global_step == 33  # max_steps counts nanoGPT's steps too
    assert probe.seen[0][1] == pytest.approx(nanogpt_get_lr(30))  # the first step's LR is nanoGPT's get_lr(iter_num)
    assert [lr for _, lr, _ in probe.seen] == pytest.approx([nanogpt_get_lr(s) for s in steps])
    # the first step starts from the file's state of that tensor, which is not AdamW's fresh zeros
    assert torch.equal(probe.seen[0][2], file_state["exp_avg"]) and file_state["exp_avg"].abs().sum() > 0
    assert dm.batches_consumed == 30  # the data stream starts where DataModule.state_dict places step 30
    assert module.hparams.init_optimizer_state is False  # a --ckpt_path resume does not apply it again


def test_init_optimizer_state_restores_the_files_state_exactly(tmp_path):
    """The AdamW state a continued run starts its first step with is the file's, tensor by tensor."""
    data = write_nanogpt_data(tmp_path / "data" / "shakespeare_char", "char")
    ckpt, _, original = write_nanogpt_run(tmp_path / "out", "char", False, False, iter_num=7)
    dm = TokenBinDataModule(data_dir=data, block_size=BLOCK, batch_size=4, val_batches=2)

    class Snapshot(L.Callback):
        def on_train_start(self, trainer, module) -> None:
            self.state = {
                n: {k: v.clone() for k, v in trainer.optimizers[0].state[p].items()}
                for n, p in module.model.named_parameters()
            }

    snap = Snapshot()
    module = GPTLightningModule(
        vocab_size=dm.vocab_size,
        block_size=BLOCK,
        tokenizer=dm.tokenizer_meta,
        init_from=str(ckpt),
        init_optimizer_state=True,
        compile=False,
    )
    trainer = L.Trainer(
        accelerator="cpu",
        max_steps=8,
        logger=False,
        enable_checkpointing=False,
        callbacks=[snap],
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
    )
    with pytest.warns(UserWarning, match="does not continue nanoGPT's exactly"):  # the defaults differ from SCHEDULE
        trainer.fit(module, dm)
    params = [(k, v) for k, v in original["model"].items() if "lm_head" not in k]
    order = [k for k, v in params if v.dim() >= 2] + [k for k, v in params if v.dim() < 2]
    for i, name in enumerate(order):
        for key in ("exp_avg", "exp_avg_sq", "step"):
            torch.testing.assert_close(snap.state[name][key], original["optimizer"]["state"][i][key], msg=name)


def test_init_optimizer_state_needs_a_nanogpt_checkpoint(tmp_path):
    ckpt, _ = lightning_checkpoint(tmp_path / "last.ckpt", steps=1)
    with pytest.raises(UserError, match="--ckpt_path"):
        GPTLightningModule(init_from=str(ckpt), init_optimizer_state=True)


# ------------------------------------------------------------------ data folders


@pytest.mark.parametrize("vocab", ["char", "gpt2"])
def test_a_nanogpt_data_folder_reads_as_it_is(tmp_path, vocab):
    data = write_nanogpt_data(tmp_path / vocab, vocab)
    before = {p.name: p.stat().st_mtime_ns for p in data.iterdir()}
    dm = TokenBinDataModule(data_dir=data, block_size=BLOCK, batch_size=4, val_batches=2, source="tinyshakespeare")
    if vocab == "char":
        assert dm.vocab_size == len(CHARS) and dm.tokenizer_meta == {"kind": "char", "chars": "".join(CHARS)}
    else:
        assert dm.vocab_size == 50257 and dm.tokenizer_meta["kind"] == "gpt2"
    x, y = next(iter(dm.train_dataloader()))
    train = np.fromfile(data / "train.bin", dtype=np.uint16)
    assert x.shape == (4, BLOCK) and torch.equal(x[:, 1:], y[:, :-1]) and int(x.max()) <= int(train.max())
    assert {p.name: p.stat().st_mtime_ns for p in data.iterdir()} == before  # nothing written, even with a source


def test_a_nanogpt_data_folder_with_ids_past_its_vocabulary_is_refused(tmp_path):
    data = write_nanogpt_data(tmp_path / "char", "char")
    ids = np.fromfile(data / "val.bin", dtype=np.uint16)
    ids[3] = len(CHARS)
    ids.tofile(data / "val.bin")
    with pytest.raises(UserError, match=f"token id {len(CHARS)}"):
        _ = TokenBinDataModule(data_dir=data, block_size=BLOCK).vocab_size


def test_init_optimizer_state_past_max_steps_is_an_error(tmp_path):
    data = write_nanogpt_data(tmp_path / "data" / "shakespeare_char", "char")
    ckpt, _, _ = write_nanogpt_run(tmp_path / "out", "char", False, False, iter_num=30)
    dm = TokenBinDataModule(data_dir=data, block_size=BLOCK, batch_size=4, val_batches=2)
    module = GPTLightningModule(
        vocab_size=dm.vocab_size,
        block_size=BLOCK,
        tokenizer=dm.tokenizer_meta,
        init_from=str(ckpt),
        init_optimizer_state=True,
        compile=False,
    )
    trainer = L.Trainer(
        accelerator="cpu",
        max_steps=30,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
    )
    with pytest.raises(UserError, match="at or past --trainer.max_steps 30"):
        trainer.fit(module, dm)


def test_bins_that_prepare_was_replacing_are_not_a_nanogpt_folder(tmp_path):
    """An interrupted `prepare` leaves bins too; its incomplete meta.json keeps them from being read as nanoGPT's."""
    from gpt_lightning.data.bins import mark_incomplete
    from gpt_lightning.data.nanogpt import is_nanogpt_data_folder

    data = write_nanogpt_data(tmp_path / "gpt2", "gpt2")
    assert is_nanogpt_data_folder(data)
    mark_incomplete(data)  # what prepare does before it renames new bins into place
    assert not is_nanogpt_data_folder(data)
    with pytest.raises(UserError, match="half-written"):
        _ = TokenBinDataModule(data_dir=data, block_size=BLOCK).vocab_size
