"""`prepare` interrupted at any point leaves either the old complete folder or one that training refuses."""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

import pytest

from gpt_lightning import files
from gpt_lightning.data import bins
from gpt_lightning.data import prepare as prepare_module
from gpt_lightning.data.datamodule import TokenBinDataModule
from gpt_lightning.errors import UserError
from helpers import synthetic_text


def digest(folder: Path) -> dict[str, str]:
    names = ("train.bin", "val.bin", "meta.json")
    return {n: hashlib.sha256((folder / n).read_bytes()).hexdigest() for n in names if (folder / n).exists()}


# (what is interrupted, at which call, what training then sees): tokenizing, marking meta.json incomplete, renaming
# each file into place (the incomplete meta.json, train.bin, val.bin, the final meta.json)
POINTS = [
    ("write", 1, "old"),
    ("write", 2, "old"),
    ("mark_incomplete", 1, "old"),
    ("replace", 1, "old"),
    ("replace", 2, "refused"),
    ("replace", 3, "refused"),
    ("replace", 4, "refused"),
]


@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("prep")
    (root / "old.txt").write_text(synthetic_text(seed=1))
    (root / "new.txt").write_text(synthetic_text(seed=2, alphabet="klmnopqrstuvwxyz .,\n"))
    prepare_module.prepare(str(root / "old.txt"), "char", root / "old")
    prepare_module.prepare(str(root / "new.txt"), "char", root / "new")
    return {"root": root, "old": root / "old", "new": root / "new"}


@pytest.mark.parametrize("point, nth, expected", POINTS, ids=[f"{p}-{n}" for p, n, _ in POINTS])
def test_interrupted_prepare_leaves_nothing_training_accepts(folders, tmp_path, monkeypatch, point, nth, expected):
    out = tmp_path / "data"
    shutil.copytree(folders["old"], out)
    calls = {"n": 0}

    def interrupt_on_nth(original):
        def wrapper(*args, **kwargs):
            calls["n"] += 1
            if calls["n"] == nth:
                raise KeyboardInterrupt
            return original(*args, **kwargs)

        return wrapper

    if point == "write":
        monkeypatch.setattr(bins.BinWriter, "write", interrupt_on_nth(bins.BinWriter.write))
    elif point == "replace":
        monkeypatch.setattr(files.os, "replace", interrupt_on_nth(os.replace))
    else:
        monkeypatch.setattr(prepare_module, "mark_incomplete", interrupt_on_nth(bins.mark_incomplete))
    with pytest.raises(KeyboardInterrupt):
        prepare_module.prepare(str(folders["root"] / "new.txt"), "char", out, overwrite=True)
    monkeypatch.undo()

    assert not list(
        out.glob(f".*{files.TMP_MARK}*")
    )  # temporary files are removed (after SIGKILL they stay, never read)
    if expected == "refused":  # nothing half-written is trained on
        with pytest.raises(UserError, match="half-written by a `prepare` that stopped"):
            _ = TokenBinDataModule(data_dir=out, block_size=16).meta
        with pytest.raises(UserError, match="half-written"):  # not taken for a nanoGPT folder (bins, no meta.json)
            _ = TokenBinDataModule(data_dir=out, block_size=16, source=None).vocab_size
        prepare_module.prepare(str(folders["root"] / "new.txt"), "char", out)  # a rerun replaces it, no --overwrite
        assert digest(out) == digest(folders["new"])
    else:  # the old folder, complete and untouched
        _ = TokenBinDataModule(data_dir=out, block_size=16).meta
        assert digest(out) == digest(folders["old"])
