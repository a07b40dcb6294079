"""No silent surprises in what `fit` trains on (data/datamodule.py: settle_data_options), the LR schedule cut short
by max_steps (train/console.py), and val/bpb's bytes (data/bytes.py)."""

from __future__ import annotations

import json
import math

import pytest
from jsonargparse import Namespace

from gpt_lightning.data.bytes import bits_per_byte, count_split_bytes, split_bytes
from gpt_lightning.data.datamodule import settle_data_options
from gpt_lightning.errors import UserError
from gpt_lightning.train.console import schedule_cut_short


def data_options(data_dir, source=None, tokenizer=None) -> Namespace:
    return Namespace(data_dir=data_dir, source=source, tokenizer=tokenizer)


def test_a_presets_source_does_not_fill_a_new_folder(tmp_path, tiny_text_file):
    data = data_options(tmp_path / "mine", source=str(tiny_text_file), tokenizer="char")  # as a preset sets them
    settle_data_options(data, ["--data.data_dir", str(tmp_path / "mine")])
    assert data.source is None and data.tokenizer is None  # recorded so in the saved config
    assert not (tmp_path / "mine").exists()  # nothing prepared; reading the folder then says how to prepare it


def test_a_source_given_with_the_folder_prepares_it(tmp_path, tiny_text_file):
    data = data_options(tmp_path / "mine", source=str(tiny_text_file))
    settle_data_options(data, [f"--data.data_dir={tmp_path / 'mine'}", f"--data.source={tiny_text_file}"])
    assert (tmp_path / "mine" / "meta.json").is_file() and data.tokenizer == "char"  # the folder's, recorded


def test_a_tokenizer_that_disagrees_with_the_folder_is_an_error(char_data):
    with pytest.raises(UserError, match="--data.tokenizer gpt2 disagrees with .* prepared with the char tokenizer"):
        settle_data_options(data_options(char_data, tokenizer="gpt2"), ["--data.tokenizer=gpt2"])
    data = data_options(char_data)
    settle_data_options(data, [])
    assert data.tokenizer == "char"


def test_schedule_cut_short_is_said_with_numbers():
    hp = dict(learning_rate=1e-3, min_lr=1e-4, warmup_steps=100, lr_decay_steps=2000, decay_lr=True)
    note = schedule_cut_short(600, hp)
    assert "max_steps 600" in note and "lr_decay_steps 2000" in note and "86% of the peak" in note
    assert schedule_cut_short(2000, hp) is None and schedule_cut_short(-1, hp) is None
    assert schedule_cut_short(600, {**hp, "decay_lr": False}) is None


def test_bits_per_byte_and_the_bytes_of_an_old_folder(char_data, tmp_path):
    meta = json.loads((char_data / "meta.json").read_text())
    recorded = meta["val_bytes"]
    assert recorded == count_split_bytes(char_data, meta, "val")  # prepare's count = the count from the bin
    old = dict(meta)
    del old["val_bytes"]
    (char_data / "meta.json").write_text(json.dumps(old))  # a folder prepared before bytes were recorded
    try:
        assert split_bytes(char_data, dict(old), "val") == recorded
        assert json.loads((char_data / "meta.json").read_text())["val_bytes"] == recorded  # counted once, kept
    finally:
        (char_data / "meta.json").write_text(json.dumps(meta))
    assert math.isclose(bits_per_byte(math.log(2), 0.5), 0.5)  # 1 bit per token, 2 bytes per token
