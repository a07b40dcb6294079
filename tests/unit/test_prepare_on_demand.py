"""Reading the DataModule's metadata is a pure read; preparing from --data.source is the named step
`prepare_if_missing`, which `fit` calls before anything reads vocab_size."""

from __future__ import annotations

import subprocess
import sys

import pytest

from gpt_lightning.data.bins import read_meta
from gpt_lightning.data.datamodule import TokenBinDataModule
from gpt_lightning.errors import UserError
from helpers import subprocess_env

TEXT = "".join(f"line {i}: to be or not to be, that is the question.\n" for i in range(300))


@pytest.fixture
def corpus(tmp_path):
    path = tmp_path / "corpus.txt"
    path.write_text(TEXT)
    return path


def test_reading_meta_of_an_unprepared_folder_prepares_nothing(tmp_path, corpus):
    out = tmp_path / "bins"
    dm = TokenBinDataModule(data_dir=out, source=str(corpus), block_size=16)
    with pytest.raises(UserError, match="does not exist; prepare it with"):
        _ = dm.meta
    with pytest.raises(UserError, match="does not exist"):
        _ = dm.vocab_size  # what LightningCLI's argument linking reads
    assert not out.exists()


def test_the_named_step_prepares_then_meta_reads(tmp_path, corpus):
    out = tmp_path / "bins"
    dm = TokenBinDataModule(data_dir=out, source=str(corpus), block_size=16)
    dm.prepare_if_missing()
    assert dm.vocab_size == read_meta(out)["vocab_size"] == len(set(TEXT))
    stamp = (out / "train.bin").stat().st_mtime_ns
    TokenBinDataModule(data_dir=out, source=str(corpus), block_size=16).prepare_data()  # already there: no-op
    assert (out / "train.bin").stat().st_mtime_ns == stamp


def test_without_a_source_the_step_does_nothing(tmp_path):
    dm = TokenBinDataModule(data_dir=tmp_path / "bins", block_size=16)
    dm.prepare_if_missing()
    assert not (tmp_path / "bins").exists()


@pytest.mark.slow  # a fresh interpreter
def test_datamodule_does_not_import_the_tokenization_pipeline():
    code = (
        "import sys, gpt_lightning.data.datamodule; "
        "print([m for m in ('gpt_lightning.data.prepare', 'gpt_lightning.data.encode', 'gpt_lightning.data.sources', "
        "'tiktoken') if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], env=subprocess_env(), capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_fit_prepares_a_missing_folder_from_data_source(tmp_path, corpus, monkeypatch):
    from gpt_lightning.cli.fit import GPTLightningCLI

    monkeypatch.chdir(tmp_path)
    args = [
        "--data.data_dir",
        "bins",
        "--data.source",
        str(corpus),
        "--data.block_size",
        "16",
        "--data.batch_size",
        "2",
        "--data.val_batches",
        "2",
        "--model.n_layer",
        "1",
        "--model.n_head",
        "1",
        "--model.n_embd",
        "8",
        "--trainer.logger",
        "false",
        "--checkpoint.dirpath",
        "ckpt",
        "--trainer.enable_progress_bar",
        "false",
        "--trainer.accelerator",
        "cpu",
    ]
    cli = GPTLightningCLI(args=args, run=False)
    assert cli.model.hparams["vocab_size"] == read_meta(tmp_path / "bins")["vocab_size"]
