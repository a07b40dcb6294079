"""Fixtures shared by tests in more than one folder: tiny corpora and data folders, the straight tiny run
that resumed runs must reproduce, a tiny checkpoint. Plain functions tests share are in helpers.py."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from helpers import ROMEO_TEXT, TINY_TEXT, make_data, new_root, save_tiny_checkpoint, straight_run


@pytest.fixture(scope="session")
def tiny_text_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("text") / "tiny.txt"
    path.write_text(TINY_TEXT)
    return path


@pytest.fixture(scope="session")
def char_data(tmp_path_factory, tiny_text_file) -> Path:
    """A char-level data folder prepared from TINY_TEXT (about 7k train tokens)."""
    from gpt_lightning.data.prepare import prepare

    out = tmp_path_factory.mktemp("data") / "tiny_char"
    prepare(str(tiny_text_file), "char", out)
    return out


@pytest.fixture(scope="session")
def data_root(tmp_path_factory) -> Path:
    """A folder with data/tiny, where TINY's data_dir points (synthetic text, char tokenizer)."""
    root = tmp_path_factory.mktemp("data")
    make_data(root)
    return root


@pytest.fixture(scope="session")
def reference(tmp_path_factory, data_root) -> dict:
    """The straight tiny run that every stopped and resumed run must reproduce."""
    return straight_run(new_root(tmp_path_factory.mktemp("reference"), data_root))


@pytest.fixture(scope="session")
def char_ckpt(tmp_path_factory) -> Path:
    """A Lightning checkpoint of a one-layer model with a char vocabulary of ROMEO_TEXT."""
    from gpt_lightning.tokenizer import CharTokenizer

    tok = CharTokenizer.from_text(ROMEO_TEXT)
    return save_tiny_checkpoint(tmp_path_factory.mktemp("ckpt") / "char.ckpt", tok.to_meta(), tok.vocab_size)


@pytest.fixture
def one_torch_thread():
    """For tiny models threads gain nothing, and on a busy machine they lose a lot (OpenMP waits)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def earlier_run(tmp_path_factory) -> Path:
    """A data folder and a 2-step run's checkpoint (out/ckpt/last.ckpt) made with the tiny config, which each test
    copies before changing anything."""
    from helpers import make_data, run_cli_in, write_tiny_config

    root = tmp_path_factory.mktemp("earlier")
    make_data(root)
    write_tiny_config(root, **{"trainer.max_steps": 2})
    assert run_cli_in(root, ["fit", "--config", "tiny.yaml"]) == 0
    return root
