"""doctor's data and output-folder lines say what `fit` would: a nanoGPT data folder is fine, a broken meta.json,
a looping meta.pkl or a file in place of a folder is a problem named as such."""

from __future__ import annotations

import json
import pickle
import shutil

from gpt_lightning.cli.doctor import data_state, free_disk
from helpers import make_data


def test_a_nanogpt_data_folder_that_fit_trains_on_is_fine(tmp_path):
    prepared = make_data(tmp_path)
    nano = tmp_path / "data" / "nano"
    nano.mkdir()
    for split in ("train", "val"):
        shutil.copy(prepared / f"{split}.bin", nano / f"{split}.bin")
    chars = json.loads((prepared / "meta.json").read_text())["tokenizer"]["chars"]
    itos = dict(enumerate(chars))
    (nano / "meta.pkl").write_bytes(
        pickle.dumps({"vocab_size": len(chars), "itos": itos, "stoi": {c: i for i, c in itos.items()}})
    )
    text, problem = data_state(nano)
    assert problem is None, problem
    assert text.endswith("ok") and "char vocab 14" in text


def test_a_looping_meta_pkl_is_a_problem_not_missing_data(tmp_path):
    nano = make_data(tmp_path)
    (nano / "meta.json").unlink()
    loop: list = []
    loop.append(loop)
    (nano / "meta.pkl").write_bytes(pickle.dumps({"vocab_size": 1, "itos": {0: "a"}, "stoi": {"a": 0}, "x": loop}))
    text, problem = data_state(nano)
    assert "holds a container inside itself" in problem and "prepare" not in text


def test_a_malicious_meta_pkl_is_a_problem_and_its_code_never_runs(tmp_path):
    from nanogpt_helpers import crafted_meta_pkl

    nano = make_data(tmp_path)
    (nano / "meta.json").unlink()
    crafted_meta_pkl(nano, tmp_path / "MARKER")
    text, problem = data_state(nano)
    assert problem is not None and "meta.pkl" in problem and "prepare --out" not in problem
    assert not (tmp_path / "MARKER").exists()


def test_an_empty_meta_json_is_a_problem_not_a_traceback(tmp_path):
    data = make_data(tmp_path)
    (data / "meta.json").write_text("{}")
    _, problem = data_state(data)
    assert "meta.json lacks vocab_size" in problem


def test_a_file_is_neither_a_data_folder_nor_an_output_folder(tmp_path):
    (tmp_path / "afile").write_text("mine")
    text, problem = data_state(tmp_path / "afile")
    assert text.endswith("is a file") and "--out" not in problem
    text, warning, problem = free_disk(tmp_path / "afile")
    assert problem.endswith("is a file, not a folder; choose another output folder")
