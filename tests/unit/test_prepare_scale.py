"""`prepare` at scale: folders of .txt/.jsonl, Hugging Face datasets from local files, parallel tokenization
that gives the same bins as one process, long documents cut without changing GPT-2's tokens, and reruns after
an interruption."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from gpt_lightning.cli import main
from gpt_lightning.data import encode
from gpt_lightning.data import prepare as prepare_module
from gpt_lightning.data.bins import read_meta
from gpt_lightning.data.encode import cut_text
from gpt_lightning.data.prepare import prepare
from gpt_lightning.errors import UserError
from gpt_lightning.tokenizer import GPT2Tokenizer

WORDS = "the king and queen of rome speak now my lord I'll don't 42 3.14 — café naïve".split()


def make_docs(n: int, seed: int = 0) -> list[str]:
    rng = np.random.default_rng(seed)
    docs = []
    for i in range(n):
        lines = [" ".join(rng.choice(WORDS, size=rng.integers(3, 12))) for _ in range(rng.integers(1, 8))]
        # trailing spaces, blank lines and tabs: the places where a careless cut would change GPT-2's tokens
        docs.append(f"Doc {i}:  \n" + "\n".join(lines) + ("\n\n\t" if i % 3 == 0 else "\n"))
    return docs


@pytest.fixture
def corpus(tmp_path) -> tuple[Path, list[str]]:
    """A folder with two .jsonl files and one .txt file: 41 documents, in sorted-file order."""
    docs = make_docs(41)
    folder = tmp_path / "corpus"
    (folder / "sub").mkdir(parents=True)
    (folder / "a.jsonl").write_text("".join(json.dumps({"text": d, "id": i}) + "\n" for i, d in enumerate(docs[:20])))
    (folder / "b.txt").write_text(docs[20])
    (folder / "sub" / "c.jsonl").write_text("\n".join(json.dumps({"text": d}) for d in docs[21:]) + "\n\n")
    (folder / "notes.md").write_text("not a document")
    return folder, docs


def bins(folder: Path) -> tuple[bytes, bytes]:
    return (folder / "train.bin").read_bytes(), (folder / "val.bin").read_bytes()


def test_cut_text_never_changes_gpt2_tokens():
    tok = GPT2Tokenizer()
    text = "".join(make_docs(30, seed=1)) + "x" * 50 + "  \n\n  y's  z\t\n'll 123 456"
    for max_chars in (5, 17, 64, 1000):
        pieces = list(cut_text(text, max_chars))
        assert "".join(pieces) == text
        assert len(pieces) > 1
        if max_chars >= 64:  # (tiny windows often hold no safe point; then a piece runs on to the next one)
            assert all(len(p) <= max_chars or "x" * 50 in p for p in pieces)  # the x's hold no safe point
        assert sum((tok.encode(p) for p in pieces), []) == tok.encode(text)


def test_jsonl_folder_matches_hand_tokenization(corpus, tmp_path):
    folder, docs = corpus
    meta = prepare(str(folder), "gpt2", tmp_path / "bins", val_fraction=0.1)
    tok = GPT2Tokenizer()
    # many documents: every 10th document (1-based) goes whole to val, the rest to train, in sorted-file order
    expect = {"train": [], "val": []}
    for i, d in enumerate(docs):
        expect["val" if (i + 1) % 10 == 0 else "train"] += tok.encode(d) + [tok.eot_token]
    train, val = bins(tmp_path / "bins")
    assert np.frombuffer(train, np.uint16).tolist() == expect["train"]
    assert np.frombuffer(val, np.uint16).tolist() == expect["val"]
    assert meta["source"]["documents"] == 41


def test_num_proc_gives_identical_bins(corpus, tmp_path):
    folder, _ = corpus
    for kind in ("gpt2", "char"):
        one = prepare(str(folder), kind, tmp_path / f"{kind}1", num_proc=1)
        two = prepare(str(folder), kind, tmp_path / f"{kind}2", num_proc=2, batch_chars=300)  # many small batches
        assert bins(tmp_path / f"{kind}1") == bins(tmp_path / f"{kind}2")
        assert one == two


def test_prepare_cli_with_num_proc(corpus, tmp_path, capsys):
    folder, _ = corpus
    main(["prepare", "--source", str(folder), "--tokenizer", "gpt2", "--out", str(tmp_path / "cli"), "--num_proc", "2"])
    assert "vocab 50257" in capsys.readouterr().out
    assert read_meta(tmp_path / "cli")["source"]["corpus"] == "corpus"


def test_bad_jsonl_line_is_a_user_error(tmp_path):
    (tmp_path / "bad.jsonl").write_text('{"text": "ok"}\n{"txt": "no text field"}\n')
    with pytest.raises(UserError, match=r"bad.jsonl, line 2 has no string 'text' field"):
        prepare(str(tmp_path / "bad.jsonl"), "gpt2", tmp_path / "out", val_fraction=0.0)


def test_hf_source_from_local_files(corpus, tmp_path):
    datasets = pytest.importorskip("datasets")
    folder, docs = corpus
    prepare(str(folder), "gpt2", tmp_path / "ref")  # the bins both hf: sources must reproduce
    # a dataset written by save_to_disk, and a folder of data files read by load_dataset: no network either way
    saved = tmp_path / "saved"
    datasets.Dataset.from_dict({"text": docs, "n": list(range(len(docs)))}).save_to_disk(str(saved))
    files = tmp_path / "hf_files"
    files.mkdir()
    (files / "train.jsonl").write_text("".join(json.dumps({"text": d}) + "\n" for d in docs))
    for name in (saved, files):
        meta = prepare(f"hf:{name}", "gpt2", tmp_path / f"hf_{name.name}", num_proc=2, batch_chars=500)
        assert bins(tmp_path / f"hf_{name.name}") == bins(tmp_path / "ref")
        assert meta["source"]["documents"] == len(docs) and meta["source"]["corpus"] == f"hf:{name.name}"
    with pytest.raises(UserError, match="has no 'text' column"):
        datasets.Dataset.from_dict({"body": docs}).save_to_disk(str(tmp_path / "notext"))
        prepare(f"hf:{tmp_path / 'notext'}", "gpt2", tmp_path / "x")


def test_interrupted_prepare_keeps_old_data_and_reruns_cleanly(corpus, tmp_path, monkeypatch):
    folder, _ = corpus
    out = tmp_path / "bins"
    (tmp_path / "other.txt").write_text("".join(make_docs(3, seed=5)))
    old_meta = prepare(str(tmp_path / "other.txt"), "gpt2", out)
    old_bins = bins(out)

    calls = []

    def interrupted(batch):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt  # Ctrl-C in the middle of the corpus
        return real(batch)

    real = encode._encode_batch
    monkeypatch.setattr(encode, "_encode_batch", interrupted)
    with pytest.raises(KeyboardInterrupt):
        prepare(str(folder), "gpt2", out, overwrite=True, batch_chars=300)
    monkeypatch.setattr(encode, "_encode_batch", real)
    # the old folder is untouched and nothing half-written is left behind
    assert read_meta(out) == old_meta and bins(out) == old_bins
    assert sorted(p.name for p in out.iterdir()) == ["meta.json", "train.bin", "val.bin"]

    # a prepare killed outright (no cleanup ran) leaves temporaries named by its pid: a rerun removes them
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale = out / f".train.bin.tmp-{int(dead.stdout)}-{socket.gethostname()}"
    stale.write_bytes(b"\x00" * 1000)
    elsewhere = out / f".val.bin.tmp-{int(dead.stdout)}-another-node"  # maybe still being written there
    elsewhere.write_bytes(b"\x00" * 10)
    (out / "meta.json").unlink()
    meta = prepare(str(folder), "gpt2", out, overwrite=True, num_proc=2, batch_chars=300)
    assert not stale.exists() and elsewhere.exists()
    elsewhere.unlink()
    clean = prepare(str(folder), "gpt2", tmp_path / "clean")
    assert meta == clean and bins(out) == bins(tmp_path / "clean")


def test_memory_is_bounded_by_batches_in_flight(monkeypatch, corpus, tmp_path):
    """The reader never runs more than 2 x num_proc batches ahead of the writer."""
    folder, _ = corpus
    seen, written = [], []
    real_make = prepare_module.make_batches

    def counting_batches(pieces, batch_chars):
        for b in real_make(pieces, batch_chars):
            seen.append(b)
            yield b

    real_encode = prepare_module.encode_batches

    def counting_encode(*args, **kwargs):
        for batch, arrays in real_encode(*args, **kwargs):
            written.append(batch)
            assert len(seen) - len(written) <= 2 * 2
            yield batch, arrays

    monkeypatch.setattr(prepare_module, "make_batches", counting_batches)
    monkeypatch.setattr(prepare_module, "encode_batches", counting_encode)
    prepare(str(folder), "gpt2", tmp_path / "b", num_proc=2, batch_chars=200)
    assert len(written) == len(seen) > 10
