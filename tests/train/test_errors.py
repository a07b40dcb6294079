"""Bad input, one row each: the real entry point exits non-zero with one clear sentence, no traceback, and
leaves every file that was there before untouched."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path
from typing import Callable

import numpy as np
import pytest

from gpt_lightning.data.bins import mark_incomplete
from helpers import make_data, run_cli_in_process, synthetic_text, write_tiny_config

FIT = ["fit", "--config", "tiny.yaml"]


def copy_data(root: Path, name: str, *, meta: bool = True) -> Path:
    out = root / "data" / name
    shutil.copytree(root / "data" / "tiny", out)
    if not meta:
        mark_incomplete(out)  # as a `prepare` that stopped half way leaves it (bins alone are a nanoGPT folder)
    return out


def missing_data_folder(root: Path) -> list[str]:
    return [*FIT, "--data.data_dir", "data/nope", "--checkpoint.dirpath", "out/new"]


def bins_without_meta(root: Path) -> list[str]:
    copy_data(root, "nometa", meta=False)
    return [*FIT, "--data.data_dir", "data/nometa", "--checkpoint.dirpath", "out/new"]


def bin_not_whole_tokens(root: Path) -> list[str]:
    with open(copy_data(root, "odd") / "train.bin", "ab") as f:
        f.write(b"\0")
    return [*FIT, "--data.data_dir", "data/odd", "--checkpoint.dirpath", "out/new"]


def vocab_exceeds_model(root: Path) -> list[str]:
    # the checkpoint's model has the tiny vocabulary; this data has more characters
    make_data(root, "wide", text=synthetic_text(alphabet="klmnopqrstuvwxyz .,\n"))
    return [*FIT, "--data.data_dir", "data/wide", "--ckpt_path", "out/ckpt/last.ckpt"]


def token_id_out_of_range(root: Path) -> list[str]:
    tokens = np.memmap(copy_data(root, "bad") / "val.bin", dtype=np.uint16, mode="r+")
    tokens[10] = 200
    tokens.flush()
    del tokens
    return [*FIT, "--data.data_dir", "data/bad", "--checkpoint.dirpath", "out/new"]


def block_size_over_val_split(root: Path) -> list[str]:
    return [*FIT, "--data.block_size", "4000", "--checkpoint.dirpath", "out/new"]


def empty_source(root: Path) -> list[str]:
    (root / "empty.txt").write_text("")
    return ["prepare", "--source", "empty.txt", "--out", "data/empty"]


def not_utf8(root: Path) -> list[str]:
    (root / "latin1.txt").write_bytes("First line\ncaf\xe9 au lait\n".encode("latin-1"))
    return ["prepare", "--source", "latin1.txt", "--out", "data/latin1"]


def ckpt_path_missing(root: Path) -> list[str]:
    return [*FIT, "--ckpt_path", "out/ckpt/nope.ckpt"]


def ckpt_architecture_mismatch(root: Path) -> list[str]:
    return [*FIT, "--ckpt_path", "out/ckpt/last.ckpt", "--model.n_layer", "3"]


def ckpt_truncated(root: Path) -> list[str]:
    data = (root / "out/ckpt/last.ckpt").read_bytes()
    (root / "broken.ckpt").write_bytes(data[: len(data) // 2])
    return [*FIT, "--ckpt_path", "broken.ckpt"]


def prepare_over_other_tokenizer(root: Path) -> list[str]:
    return ["prepare", "--source", "tiny.txt", "--tokenizer", "gpt2", "--out", "data/tiny"]


def unknown_yaml_key(root: Path) -> list[str]:
    (root / "typo.yaml").write_text((root / "tiny.yaml").read_text().replace("n_layer:", "n_layers:"))
    return ["fit", "--config", "typo.yaml", "--checkpoint.dirpath", "out/new"]


def new_run_over_earlier_run(root: Path) -> list[str]:
    return FIT  # out/ckpt holds the earlier run's last.ckpt


CASES: list[tuple[Callable[[Path], list[str]], str]] = [
    (missing_data_folder, "error: Data folder data/nope does not exist; prepare it with"),
    (bins_without_meta, "error: Data folder data/nometa was left half-written by a `prepare` that stopped"),
    (bin_not_whole_tokens, "holds 36001 bytes, not a whole number of uint16 tokens"),
    (
        vocab_exceeds_model,
        "does not fit this model (vocab_size=14 there, 20 here): train on data with the same vocabulary",
    ),
    (token_id_out_of_range, "data/bad/val.bin holds token id 200 at position 10, outside meta.json's vocab_size 14"),
    (
        block_size_over_val_split,
        "The val split of data/tiny has 2000 tokens, too few for one window of block_size 4000",
    ),
    (empty_source, "error: Source 'empty.txt' is empty; there is no text to build a vocabulary from."),
    (not_utf8, "latin1.txt is not UTF-8 text (byte 14, line 2"),
    (ckpt_path_missing, "error: --ckpt_path out/ckpt/nope.ckpt does not exist;"),
    (
        ckpt_architecture_mismatch,
        "does not fit this model (n_layer=2 there, 3 here): use the config it was trained with",
    ),
    (ckpt_truncated, "error: broken.ckpt is not a readable checkpoint"),
    (prepare_over_other_tokenizer, "already holds 'tiny.txt' bins made with the 'char' tokenizer; pass --overwrite"),
    (unknown_yaml_key, "n_layers"),
    (
        new_run_over_earlier_run,
        "out/ckpt already holds checkpoints of an earlier run (last.ckpt); resume it with --ckpt_path last",
    ),
]


@pytest.fixture(scope="module")
def earlier_run(tmp_path_factory) -> Path:
    """A data folder and a 2-step run's checkpoint, which each case gets a copy of."""
    import os

    root = tmp_path_factory.mktemp("earlier")
    make_data(root)
    write_tiny_config(root, **{"trainer.max_steps": 2})
    cwd = os.getcwd()
    os.chdir(root)
    try:
        assert run_cli_in_process(FIT) == 0
    finally:
        os.chdir(cwd)
    return root


def snapshot(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in root.rglob("*") if p.is_file()
    }


@pytest.mark.parametrize("make_case, message", CASES, ids=[case.__name__ for case, _ in CASES])
def test_bad_input(make_case, message, earlier_run, tmp_path, monkeypatch, capsys):
    root = tmp_path / "run"
    shutil.copytree(earlier_run, root)
    monkeypatch.chdir(root)
    args = make_case(root)
    before = snapshot(root)
    capsys.readouterr()
    status = run_cli_in_process(args)
    err = capsys.readouterr().err
    assert status != 0
    assert message in err, err[-2000:]
    assert "Traceback" not in err
    after = snapshot(root)
    assert {path: digest for path, digest in after.items() if path in before} == before  # nothing overwritten


def test_the_advice_of_the_refusal_works(earlier_run, tmp_path, monkeypatch):
    """`prepare ... --overwrite` (a bare flag, as the message says) replaces the folder."""
    root = tmp_path / "run"
    shutil.copytree(earlier_run, root)
    monkeypatch.chdir(root)
    (root / "other.txt").write_text(synthetic_text(seed=3))
    assert run_cli_in_process(["prepare", "--source", "other.txt", "--out", "data/tiny", "--overwrite"]) == 0
    assert '"corpus": "other.txt"' in (root / "data/tiny/meta.json").read_text()
