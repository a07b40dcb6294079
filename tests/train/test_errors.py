"""Bad input, one row each: the real entry point exits non-zero with one clear sentence, no traceback, and
leaves every file that was there before untouched."""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path
from typing import Callable

import numpy as np
import pytest

from gpt_lightning.data.bins import mark_incomplete
from helpers import make_data, run_cli_in_process, synthetic_text

FIT = ["fit", "--config", "tiny.yaml"]


def copy_data(root: Path, name: str, *, meta: bool = True) -> Path:
    out = root / "data" / name
    shutil.copytree(root / "data" / "tiny", out)
    if not meta:
        mark_incomplete(out)  # as a `prepare` that stopped half way leaves it (bins alone are a nanoGPT folder)
    return out


def missing_data_folder(root: Path) -> list[str]:
    return [*FIT, "--data.data_dir", "data/nope", "--checkpoint.dirpath", "out/new"]


def tokenizer_disagrees_with_folder(root: Path) -> list[str]:
    return [*FIT, "--data.tokenizer", "gpt2", "--checkpoint.dirpath", "out/new"]


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


def other_characters(root: Path) -> str:
    """data/shifted: the same number of characters as data/tiny, one of them another ('a' -> 'k')."""
    make_data(root, "shifted", text=synthetic_text().replace("a", "k"))
    return "data/shifted"


def resume_on_other_characters(root: Path) -> list[str]:
    return [*FIT, "--data.data_dir", other_characters(root), "--ckpt_path", "out/ckpt/last.ckpt"]


def validate_on_other_characters(root: Path) -> list[str]:
    return ["validate", "--config", "tiny.yaml", "--data.data_dir", other_characters(root), "--ckpt_path", "out/ckpt"]


def init_from_other_characters(root: Path) -> list[str]:
    data = other_characters(root)
    return [*FIT, "--data.data_dir", data, "--model.init_from", "out/ckpt/last.ckpt", "--checkpoint.dirpath", "out/new"]


def n_embd_not_multiple_of_n_head(root: Path) -> list[str]:
    return [*FIT, "--model.n_head", "3", "--checkpoint.dirpath", "out/new"]


def block_size_zero(root: Path) -> list[str]:
    return [*FIT, "--data.block_size", "0", "--checkpoint.dirpath", "out/new"]


def negative_batch_size(root: Path) -> list[str]:
    return [*FIT, "--data.batch_size=-4", "--checkpoint.dirpath", "out/new"]


def batch_size_zero(root: Path) -> list[str]:
    return [*FIT, "--data.batch_size=0", "--checkpoint.dirpath", "out/new"]


def negative_max_steps(root: Path) -> list[str]:
    return [*FIT, "--trainer.max_steps=-5", "--checkpoint.dirpath", "out/new"]


def misspelled_yaml_key(root: Path) -> list[str]:
    (root / "typo.yaml").write_text((root / "tiny.yaml").read_text().replace("n_layer:", "n_layr:"))
    return ["fit", "--config", "typo.yaml", "--checkpoint.dirpath", "out/new"]


def misspelled_flag(root: Path) -> list[str]:
    return [*FIT, "--n_layr", "3", "--checkpoint.dirpath", "out/new"]


def value_of_wrong_type(root: Path) -> list[str]:
    return [*FIT, "--model.n_layer=abc", "--checkpoint.dirpath", "out/new"]


def prepare_out_is_a_file(root: Path) -> list[str]:
    (root / "taken").write_text("mine")
    return ["prepare", "--source", "tiny.txt", "--out", "taken"]


def prepare_out_unwritable(root: Path) -> list[str]:
    return ["prepare", "--source", "tiny.txt", "--out", "/proc/gpt_lightning_data"]


def prepare_one_character(root: Path) -> list[str]:
    (root / "one.txt").write_text("a")
    return ["prepare", "--source", "one.txt", "--out", "data/one"]


def meta_json_empty(root: Path) -> list[str]:
    (copy_data(root, "nofields") / "meta.json").write_text("{}")
    return [*FIT, "--data.data_dir", "data/nofields", "--checkpoint.dirpath", "out/new"]


def export_out_is_a_file(root: Path) -> list[str]:
    (root / "taken").write_text("mine")
    return ["export", "--ckpt_path", "out/ckpt/last.ckpt", "--out", "taken"]


def export_into_earlier_export(root: Path) -> list[str]:
    (root / "exported").mkdir()
    (root / "exported" / "config.json").write_text("{}")
    return ["export", "--ckpt_path", "out/ckpt/last.ckpt", "--out", "exported"]


def generate_folder_without_last(root: Path) -> list[str]:
    return ["generate", "--ckpt_path", "data", "--max_new_tokens", "5"]


def fit_ckpt_path_folder_without_last(root: Path) -> list[str]:
    return [*FIT, "--ckpt_path", "data"]


def ckpt_with_python_objects(root: Path) -> list[str]:
    import datetime

    import torch

    torch.save({"state_dict": {}, "saved": datetime.date(2024, 1, 1)}, root / "objects.ckpt")
    return ["generate", "--ckpt_path", "objects.ckpt", "--max_new_tokens", "5"]


def truncated_last_beside_best(root: Path) -> list[str]:
    crashed = root / "out" / "crashed"
    crashed.mkdir()
    data = (root / "out/ckpt/last.ckpt").read_bytes()
    (crashed / "best-step000002-val2.0000.ckpt").write_bytes(data)
    (crashed / "last.ckpt").write_bytes(data[: len(data) // 3])
    return [*FIT, "--checkpoint.dirpath", "out/crashed", "--ckpt_path", "last"]


def corrupt_safetensors(root: Path) -> list[str]:
    (root / "model.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json" + bytes(64))
    return ["generate", "--ckpt_path", "model.safetensors", "--max_new_tokens", "5"]


def init_from_corrupt_safetensors(root: Path) -> list[str]:
    corrupt_safetensors(root)
    return [*FIT, "--model.init_from", "model.safetensors", "--checkpoint.dirpath", "out/new"]


def bin_with_non_tensors(root: Path) -> list[str]:
    import torch

    (root / "hf").mkdir()
    torch.save({"wte.weight": "not a tensor"}, root / "hf" / "pytorch_model.bin")
    return ["generate", "--ckpt_path", "hf", "--max_new_tokens", "5"]


def export_bin_with_non_tensors(root: Path) -> list[str]:
    bin_with_non_tensors(root)
    return ["export", "--ckpt_path", "hf/pytorch_model.bin", "--out", "exported"]


class CreatesMarker:
    """Unpickling this runs `open(MARKER, "w")`: a stand-in for any code a crafted checkpoint could run."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return open, (str(self.marker), "w")


def evil_checkpoint(root: Path) -> Path:
    """A real checkpoint with a payload beside its tensors; the test checks that root/MARKER never appears."""
    import torch

    checkpoint = torch.load(root / "out/ckpt/last.ckpt", weights_only=True)
    checkpoint["payload"] = CreatesMarker(root / "MARKER")
    torch.save(checkpoint, root / "evil.ckpt")
    return root / "evil.ckpt"


def ckpt_path_http(root: Path) -> list[str]:
    return [*FIT, "--ckpt_path", "http://127.0.0.1:9/evil.ckpt"]


def ckpt_path_file_url_weights_only_false(root: Path) -> list[str]:
    return [*FIT, "--ckpt_path", evil_checkpoint(root).as_uri(), "--weights_only=false"]


def ckpt_path_s3(root: Path) -> list[str]:
    return ["validate", "--config", "tiny.yaml", "--ckpt_path", "s3://bucket/run/last.ckpt"]


def ckpt_path_best(root: Path) -> list[str]:
    return ["test", "--config", "tiny.yaml", "--ckpt_path", "best"]


def evil_ckpt_weights_only_false(root: Path) -> list[str]:
    evil_checkpoint(root)
    return [*FIT, "--ckpt_path", "evil.ckpt", "--weights_only=false"]


def evil_ckpt_weights_only_true(root: Path) -> list[str]:
    evil_checkpoint(root)
    return ["validate", "--config", "tiny.yaml", "--ckpt_path", "evil.ckpt", "--weights_only=true"]


def export_overwrite_into_its_checkpoint_folder(root: Path) -> list[str]:
    return ["export", "--ckpt_path", "out/ckpt/last.ckpt", "--out", "out/ckpt", "--overwrite"]


def export_overwrite_into_the_run(root: Path) -> list[str]:
    return ["export", "--ckpt_path", "out/ckpt/last.ckpt", "--out", "out", "--overwrite", "--format", "nanogpt"]


def export_overwrite_into_the_working_folder(root: Path) -> list[str]:
    return ["export", "--ckpt_path", "out/ckpt/last.ckpt", "--out", ".", "--overwrite"]


def export_overwrite_into_root(root: Path) -> list[str]:
    return ["export", "--ckpt_path", "out/ckpt/last.ckpt", "--out", "/", "--overwrite"]


def export_overwrite_into_another_runs_folder(root: Path) -> list[str]:
    shutil.copy(root / "out/ckpt/last.ckpt", root / "source.ckpt")
    return ["export", "--ckpt_path", "source.ckpt", "--out", "out/ckpt", "--overwrite"]


def export_overwrite_into_a_running_fits_folder(root: Path) -> list[str]:
    (root / "out/running").mkdir()
    (root / "out/running/run.lock").write_text('{"pid": 1}')  # a fit that has not saved anything yet
    return ["export", "--ckpt_path", "out/ckpt/last.ckpt", "--out", "out/running", "--overwrite"]


def export_overwrite_into_a_folder_of_ones_own(root: Path) -> list[str]:
    (root / "notes").mkdir()
    (root / "notes/todo.txt").write_text("mine")
    return ["export", "--ckpt_path", "out/ckpt/last.ckpt", "--out", "notes", "--overwrite"]


def run_lock_is_a_symlink(root: Path) -> list[str]:
    (root / "mine.txt").write_text("the user's own file")
    (root / "out/linked").mkdir()
    (root / "out/linked/run.lock").symlink_to(root / "mine.txt")
    return [*FIT, "--checkpoint.dirpath", "out/linked"]


def nanogpt_data_with_a_looping_meta_pkl(root: Path) -> list[str]:
    import pickle

    out = copy_data(root, "nano")
    (out / "meta.json").unlink()  # bins and a meta.pkl: a nanoGPT data folder
    nested: list = []
    for _ in range(60):
        nested = [nested, nested]  # 1 KB; a walk of all its 2**60 paths never ends
    (out / "meta.pkl").write_bytes(pickle.dumps({"vocab_size": 1, "itos": {0: "a"}, "stoi": {"a": 0}, "x": nested}))
    return [*FIT, "--data.data_dir", "data/nano", "--checkpoint.dirpath", "out/new"]


def ckpt_hparams_say_a_huge_model(root: Path) -> list[str]:
    """A checkpoint whose hyperparameters say n_embd=4096 (its weights are the tiny model's): with --ckpt_path and
    no config they become the model's settings, and building it first would allocate about 2 GB."""
    import torch

    checkpoint = torch.load(root / "out/ckpt/last.ckpt", weights_only=True)
    checkpoint["hyper_parameters"]["n_embd"] = 4096
    torch.save(checkpoint, root / "huge.ckpt")
    return ["fit", "--data.data_dir", "data/tiny", "--ckpt_path", "huge.ckpt", "--checkpoint.dirpath", "out/huge"]


def negative_learning_rate(root: Path) -> list[str]:
    return [*FIT, "--model.learning_rate=-1", "--checkpoint.dirpath", "out/new"]


def negative_muon_lr(root: Path) -> list[str]:
    return [*FIT, "--model.optimizer=muon", "--model.muon_lr=-1", "--checkpoint.dirpath", "out/new"]


def beta1_over_one(root: Path) -> list[str]:
    return [*FIT, "--model.beta1=1.5", "--checkpoint.dirpath", "out/new"]


def negative_muon_weight_decay(root: Path) -> list[str]:
    return [*FIT, "--model.optimizer=muon", "--model.muon_weight_decay=-1", "--checkpoint.dirpath", "out/new"]


def muon_momentum_over_one(root: Path) -> list[str]:
    return [*FIT, "--model.optimizer=muon", "--model.muon_momentum=2", "--checkpoint.dirpath", "out/new"]


def negative_weight_decay(root: Path) -> list[str]:
    return [*FIT, "--model.weight_decay=-1", "--checkpoint.dirpath", "out/new"]


def resume_adamw_run_as_muon(root: Path) -> list[str]:
    return [*FIT, "--model.optimizer=muon", "--ckpt_path", "last"]


def resume_muon_run_as_adamw(root: Path) -> list[str]:
    """A checkpoint that says Muon wrote it (its hyperparameters, which are the defaults on resume)."""
    import torch

    checkpoint = torch.load(root / "out/ckpt/last.ckpt", weights_only=True)
    checkpoint["hyper_parameters"]["optimizer"] = "muon"
    torch.save(checkpoint, root / "muon.ckpt")
    return [*FIT, "--model.optimizer=adamw", "--ckpt_path", "muon.ckpt"]


def foreign_model_folder(root: Path, config_json: str, metadata: dict | None = None) -> list[str]:
    """hf/: the tiny run's weights as a Hugging Face GPT-2 folder whose config.json is `config_json` (and whose
    .safetensors metadata is `metadata`, without our own config in it unless given)."""
    import json

    from safetensors.torch import load_file, save_file

    assert run_cli_in_process(["export", "--ckpt_path", "out/ckpt/last.ckpt", "--out", "hf"]) == 0
    tensors = load_file(root / "hf" / "model.safetensors")
    save_file(tensors, root / "hf" / "model.safetensors", metadata={"format": "pt", **(metadata or {})})
    exported = json.loads((root / "hf" / "config.json").read_text())
    (root / "hf" / "config.json").write_text(config_json.replace("EXPORTED", json.dumps(exported)))
    return ["generate", "--ckpt_path", "hf", "--max_new_tokens", "5"]


def config_json_not_json(root: Path) -> list[str]:
    return foreign_model_folder(root, "{nope")


def config_json_a_list(root: Path) -> list[str]:
    foreign_model_folder(root, "[1,2]")
    return [*FIT, "--model.init_from", "hf", "--checkpoint.dirpath", "out/new"]


def safetensors_metadata_not_json(root: Path) -> list[str]:
    return foreign_model_folder(root, "EXPORTED", metadata={"gpt_lightning": "{nope"})


def tokenizer_chars_a_number(root: Path) -> list[str]:
    foreign_model_folder(root, "EXPORTED")
    text = (root / "hf" / "config.json").read_text()
    (root / "hf" / "config.json").write_text(text.replace('"chars": "\\n ,.abcdefghij"', '"chars": 5'))
    assert '"chars": 5' in (root / "hf" / "config.json").read_text()
    return ["generate", "--ckpt_path", "hf", "--max_new_tokens", "5"]


def checkpoint_vocabulary_a_character_many_times(root: Path) -> list[str]:
    import torch

    checkpoint = torch.load(root / "out/ckpt/last.ckpt", weights_only=True)
    checkpoint["hyper_parameters"]["tokenizer"]["chars"] = "a" * 14
    torch.save(checkpoint, root / "aaa.ckpt")
    return ["export", "--ckpt_path", "aaa.ckpt", "--out", "exported"]


def meta_json_vocabulary_a_character_many_times(root: Path) -> list[str]:
    import json

    meta = json.loads((copy_data(root, "aaa") / "meta.json").read_text())
    meta["tokenizer"]["chars"] = "a" * 14
    (root / "data/aaa/meta.json").write_text(json.dumps(meta))
    return [*FIT, "--data.data_dir", "data/aaa", "--checkpoint.dirpath", "out/new"]


def val_every_n_steps_negative(root: Path) -> list[str]:
    return [*FIT, "--val_every_n_steps=-3", "--checkpoint.dirpath", "out/new"]


def temperature_nan(root: Path) -> list[str]:
    return ["generate", "--ckpt_path", "out/ckpt", "--temperature", "nan", "--max_new_tokens", "5"]


def mistyped_subcommand(root: Path) -> list[str]:
    return ["exprot", "--ckpt_path", "out/ckpt", "--out", "exported"]


def config_empty(root: Path) -> list[str]:
    (root / "empty.yaml").write_text("")
    return ["fit", "--config", "empty.yaml", "--checkpoint.dirpath", "out/new"]


def config_missing(root: Path) -> list[str]:
    return ["fit", "--config", "nope.yaml", "--checkpoint.dirpath", "out/new"]


def config_a_folder(root: Path) -> list[str]:
    return ["validate", "--config", "data", "--ckpt_path", "out/ckpt"]


def config_with_a_key_twice(root: Path) -> list[str]:
    text = (root / "tiny.yaml").read_text()
    (root / "twice.yaml").write_text(text.replace("model:\n", "model:\n  n_layer: 3\nmodel:\n", 1))
    return ["fit", "--config", "twice.yaml", "--checkpoint.dirpath", "out/new"]


def data_dir_a_file(root: Path) -> list[str]:
    return [*FIT, "--data.data_dir", "tiny.txt", "--checkpoint.dirpath", "out/new"]


def path_not_utf8(root: Path) -> list[str]:
    return ["generate", "--ckpt_path", os.fsdecode(b"out/ckpt/\xfflast.ckpt"), "--max_new_tokens", "5"]


def generate_from_a_url(root: Path) -> list[str]:
    return ["generate", "--ckpt_path", "http://127.0.0.1:9/last.ckpt", "--max_new_tokens", "5"]


def export_from_a_url(root: Path) -> list[str]:
    return ["export", "--ckpt_path=https://127.0.0.1:9/last.ckpt", "--out", "exported"]


def evaluate_a_url(root: Path) -> list[str]:
    return ["evaluate", "--ckpt_path", "https://127.0.0.1:9/gpt2", "--limit", "1"]


def init_from_a_url(root: Path) -> list[str]:
    return [*FIT, "--model.init_from", "http://127.0.0.1:9/last.ckpt", "--checkpoint.dirpath", "out/new"]


def nan_checkpoint(root: Path) -> None:
    import torch

    checkpoint = torch.load(root / "out/ckpt/last.ckpt", weights_only=True)
    checkpoint["state_dict"]["model.transformer.h.0.mlp.c_fc.weight"][0, 0] = float("nan")
    torch.save(checkpoint, root / "nan.ckpt")


def generate_from_nan_weights(root: Path) -> list[str]:
    nan_checkpoint(root)
    return ["generate", "--ckpt_path", "nan.ckpt", "--max_new_tokens", "5"]


def export_nan_weights(root: Path) -> list[str]:
    nan_checkpoint(root)
    return ["export", "--ckpt_path", "nan.ckpt", "--out", "exported"]


def init_from_nan_weights(root: Path) -> list[str]:
    nan_checkpoint(root)
    return [*FIT, "--model.init_from", "nan.ckpt", "--checkpoint.dirpath", "out/new"]


def text_file_as_checkpoint(root: Path) -> list[str]:
    (root / "notes.ckpt").write_text("print('hello')\n")
    return ["generate", "--ckpt_path", "notes.ckpt", "--max_new_tokens", "5"]


def random_bytes_as_checkpoint(root: Path) -> list[str]:
    (root / "random.ckpt").write_bytes(np.random.default_rng(0).integers(0, 255, 4096, dtype=np.uint8).tobytes())
    return [*FIT, "--ckpt_path", "random.ckpt"]


def nanogpt_iter_num_negative(root: Path) -> list[str]:
    import torch

    assert (
        run_cli_in_process(["export", "--ckpt_path", "out/ckpt/last.ckpt", "--out", "nano", "--format", "nanogpt"]) == 0
    )
    checkpoint = torch.load(root / "nano/ckpt.pt", weights_only=True)
    checkpoint["iter_num"] = -5
    torch.save(checkpoint, root / "nano/ckpt.pt")
    init = ["--model.init_from", "nano/ckpt.pt", "--model.init_optimizer_state", "true"]
    return [*FIT, *init, "--checkpoint.dirpath", "out/new"]


def muon_with_fsdp_on_cpu(root: Path) -> list[str]:
    return [*FIT, "--model.optimizer=muon", "--trainer.strategy=fsdp", "--checkpoint.dirpath", "out/new"]


CASES: list[tuple[Callable[[Path], list[str]], str]] = [
    (missing_data_folder, "error: Data folder data/nope does not exist; prepare it with"),
    (tokenizer_disagrees_with_folder, "error: --data.tokenizer gpt2 disagrees with data/tiny, which was prepared with"),
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
        # (the earlier run's best checkpoint is listed first: it validated its last step)
        "out/ckpt already holds checkpoints of an earlier run (best-step000002-val",
    ),
    (resume_on_other_characters, "was trained on other tokens than this data's (the same 'char' tokenizer, but token"),
    (validate_on_other_characters, "was trained on other tokens than this data's (the same 'char' tokenizer, but"),
    (init_from_other_characters, "error: The data's tokens do not mean what out/ckpt/last.ckpt's do (the same 'char'"),
    (n_embd_not_multiple_of_n_head, "error: Invalid --model settings: n_embd (32) must be divisible by n_head (3)"),
    (block_size_zero, "error: --data.block_size must be at least 1, got 0."),
    (negative_batch_size, "error: --data.batch_size must be at least 1, got -4."),
    (batch_size_zero, "error: --data.batch_size must be at least 1, got 0."),
    (negative_max_steps, "error: --trainer.max_steps must be -1 (no limit) or at least 0, got -5."),
    (misspelled_yaml_key, "does not accept option 'model.n_layr'; did you mean model.n_layer?"),
    (misspelled_flag, "unrecognized arguments: --n_layr 3; did you mean model.n_layer?"),
    (value_of_wrong_type, "error: --model.n_layer does not accept 'abc': it takes int or null"),
    (prepare_out_is_a_file, "error: --out taken is a file; prepare writes a data folder"),
    (prepare_out_unwritable, "error: Could not write or read /proc/gpt_lightning_data"),
    (prepare_one_character, "error: Source 'one.txt' is too small to split: its 1 token(s) all went to val"),
    (meta_json_empty, "error: data/nofields/meta.json lacks vocab_size, tokenizer, dtype, train_tokens, val_tokens"),
    (export_out_is_a_file, "error: --out taken is a file; export writes a folder"),
    (export_into_earlier_export, "error: --out exported is not empty (config.json); pass --overwrite"),
    (generate_folder_without_last, "error: data holds neither a last.ckpt (a `fit` run's folder) nor any of"),
    (fit_ckpt_path_folder_without_last, "error: --ckpt_path data is a folder without a last.ckpt"),
    (ckpt_with_python_objects, "holds Python objects beyond tensors, which could run code when read; refused for"),
    (
        truncated_last_beside_best,
        "out/crashed/last.ckpt is not a readable checkpoint (it may be truncated); resume from "
        "out/crashed/best-step000002-val2.0000.ckpt beside it instead",
    ),
    (corrupt_safetensors, "error: model.safetensors is not a readable .safetensors file"),
    (init_from_corrupt_safetensors, "error: model.safetensors is not a readable .safetensors file"),
    (bin_with_non_tensors, "error: hf/pytorch_model.bin holds 'wte.weight', which is not a tensor"),
    (export_bin_with_non_tensors, "error: hf/pytorch_model.bin: The checkpoint has no hyper_parameters to rebuild"),
    (ckpt_path_http, "error: --ckpt_path http://127.0.0.1:9/evil.ckpt is not a local checkpoint file; only a"),
    (ckpt_path_file_url_weights_only_false, "evil.ckpt is not a local checkpoint file; only a .ckpt file"),
    (ckpt_path_s3, "error: --ckpt_path s3://bucket/run/last.ckpt is not a local checkpoint file"),
    (ckpt_path_best, "error: --ckpt_path best is not a local checkpoint file"),
    (evil_ckpt_weights_only_false, "error: evil.ckpt holds Python objects beyond tensors, which could run code"),
    (evil_ckpt_weights_only_true, "error: evil.ckpt holds Python objects beyond tensors, which could run code"),
    (
        export_overwrite_into_its_checkpoint_folder,
        "error: --out out/ckpt holds the checkpoint being exported (out/ckpt/last.ckpt); choose another --out.",
    ),
    (export_overwrite_into_the_run, "error: --out out holds the checkpoint being exported (out/ckpt/last.ckpt)"),
    (export_overwrite_into_the_working_folder, "error: --out . is the working folder or a folder above it"),
    (export_overwrite_into_root, "error: --out / is the working folder or a folder above it"),
    (
        export_overwrite_into_another_runs_folder,
        "error: --out out/ckpt holds a training run's files (best-step000002-val",
    ),
    (export_overwrite_into_a_running_fits_folder, "error: --out out/running holds a training run's files (run.lock)"),
    (export_overwrite_into_a_folder_of_ones_own, "error: --out notes holds no earlier export; --overwrite only"),
    (
        ckpt_hparams_say_a_huge_model,
        "error: Checkpoint huge.ckpt does not fit this model (transformer.wte.weight (14, 32) != (14, 4096)): its",
    ),
    (nanogpt_data_with_a_looping_meta_pkl, "error: data/nano/meta.pkl holds a container inside itself or twice over"),
    (run_lock_is_a_symlink, "error: out/linked/run.lock is not a regular file (a symlink, FIFO or device)"),
    (negative_learning_rate, "error: --model.learning_rate must be >= 0, got -1.0."),
    (negative_muon_lr, "error: --model.muon_lr must be >= 0, got -1.0."),
    (beta1_over_one, "error: --model.beta1 must be in [0, 1), got 1.5."),
    (negative_muon_weight_decay, "error: --model.muon_weight_decay must be >= 0, got -1.0."),
    (muon_momentum_over_one, "error: --model.muon_momentum must be in [0, 1), got 2.0."),
    (negative_weight_decay, "error: --model.weight_decay must be >= 0, got -1.0."),
    (
        resume_adamw_run_as_muon,
        "error: Checkpoint out/ckpt/last.ckpt was trained with --model.optimizer adamw, whose state cannot continue",
    ),
    (resume_muon_run_as_adamw, "error: Checkpoint muon.ckpt was trained with --model.optimizer muon, whose state"),
    (config_json_not_json, "error: hf/config.json is not valid JSON (Expecting property name enclosed in double"),
    (config_json_a_list, "error: hf/config.json holds a JSON list, not an object of settings; it is not a model's"),
    (safetensors_metadata_not_json, "error: The 'gpt_lightning' metadata of hf/model.safetensors is not valid JSON"),
    (tokenizer_chars_a_number, "error: hf/model.safetensors has a char vocabulary that is not a list of single"),
    (checkpoint_vocabulary_a_character_many_times, "error: aaa.ckpt has a char vocabulary with 'a' twice (again at id"),
    (
        meta_json_vocabulary_a_character_many_times,
        "error: data/aaa/meta.json has a char vocabulary with 'a' twice (again at id 1), so ids would decode",
    ),
    (val_every_n_steps_negative, "error: --val_every_n_steps must be at least 1, got -3; leave it unset (null)"),
    (temperature_nan, "error: --temperature does not accept 'nan': it takes a finite number"),
    (mistyped_subcommand, "error: Unknown subcommand 'exprot'; did you mean export? The subcommands are fit, valid"),
    (config_empty, "error: --config empty.yaml is empty; write settings into it, or leave --config out."),
    (config_missing, "error: --config nope.yaml does not exist; give the path of a YAML file"),
    (config_a_folder, "error: --config data is a folder; give the path of a YAML file in it"),
    (config_with_a_key_twice, "error: The YAML settings give 'model' twice (lines "),
    (data_dir_a_file, "error: --data.data_dir tiny.txt is a file; give the folder `prepare` wrote"),
    (path_not_utf8, "error: The argument b'out/ckpt/\\xfflast.ckpt' holds a byte that is not UTF-8 text; rename"),
    (generate_from_a_url, "error: --ckpt_path http://127.0.0.1:9/last.ckpt is a URL, and URLs are not read"),
    (export_from_a_url, "error: --ckpt_path https://127.0.0.1:9/last.ckpt is a URL, and URLs are not read"),
    (evaluate_a_url, "error: --ckpt_path https://127.0.0.1:9/gpt2 is a URL, and URLs are not read"),
    (init_from_a_url, "error: --model.init_from http://127.0.0.1:9/last.ckpt is a URL, and URLs are not read"),
    (generate_from_nan_weights, "error: The weights in nan.ckpt hold NaN or infinite values (transformer.h.0.mlp"),
    (export_nan_weights, "error: The weights in nan.ckpt hold NaN or infinite values (transformer.h.0.mlp.c_fc"),
    (init_from_nan_weights, "error: The weights in nan.ckpt hold NaN or infinite values (transformer.h.0.mlp.c_fc"),
    (text_file_as_checkpoint, "error: notes.ckpt is not a checkpoint (not a file torch.save wrote); pass a .ckpt"),
    (random_bytes_as_checkpoint, "error: random.ckpt is not a checkpoint (not a file torch.save wrote); pass a"),
    (nanogpt_iter_num_negative, "error: nano/ckpt.pt has iter_num -5, not a step count (0 or more), so the step"),
    (muon_with_fsdp_on_cpu, "error: The strategy `fsdp` requires a GPU accelerator, but received `accelerator='cpu'`."),
]

# Cases that fail on a value before anything is made: no log folder, no checkpoint folder, nothing new at all.
NOTHING_MADE = {
    n_embd_not_multiple_of_n_head,
    block_size_zero,
    negative_batch_size,
    batch_size_zero,
    negative_max_steps,
    misspelled_yaml_key,
    misspelled_flag,
    value_of_wrong_type,
    prepare_out_is_a_file,
    prepare_one_character,
    export_out_is_a_file,
    export_into_earlier_export,
    init_from_other_characters,
    resume_on_other_characters,
    ckpt_path_http,
    ckpt_path_file_url_weights_only_false,
    ckpt_path_s3,
    ckpt_path_best,
    evil_ckpt_weights_only_false,
    evil_ckpt_weights_only_true,
    export_overwrite_into_its_checkpoint_folder,
    export_overwrite_into_the_run,
    export_overwrite_into_the_working_folder,
    export_overwrite_into_root,
    export_overwrite_into_another_runs_folder,
    export_overwrite_into_a_running_fits_folder,
    export_overwrite_into_a_folder_of_ones_own,
    ckpt_hparams_say_a_huge_model,
    nanogpt_data_with_a_looping_meta_pkl,
    negative_learning_rate,
    negative_muon_lr,
    beta1_over_one,
    negative_muon_weight_decay,
    muon_momentum_over_one,
    negative_weight_decay,
    resume_adamw_run_as_muon,
    resume_muon_run_as_adamw,
    config_json_not_json,
    config_json_a_list,
    safetensors_metadata_not_json,
    tokenizer_chars_a_number,
    checkpoint_vocabulary_a_character_many_times,
    meta_json_vocabulary_a_character_many_times,
    val_every_n_steps_negative,
    temperature_nan,
    mistyped_subcommand,
    config_empty,
    config_missing,
    config_a_folder,
    config_with_a_key_twice,
    data_dir_a_file,
    path_not_utf8,
    generate_from_a_url,
    export_from_a_url,
    evaluate_a_url,
    init_from_a_url,
    generate_from_nan_weights,
    export_nan_weights,
    init_from_nan_weights,
    text_file_as_checkpoint,
    random_bytes_as_checkpoint,
    nanogpt_iter_num_negative,
    muon_with_fsdp_on_cpu,
}


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
    paths_before = set(root.rglob("*"))
    capsys.readouterr()
    status = run_cli_in_process(args)
    err = capsys.readouterr().err
    assert status == 2, err[-2000:]
    assert message in err, err[-2000:]
    assert "Traceback" not in err
    assert len([line for line in err.splitlines() if line.startswith("error:")]) == 1
    after = snapshot(root)
    assert {path: digest for path, digest in after.items() if path in before} == before  # nothing overwritten
    assert not (root / "MARKER").exists()  # no checkpoint's code ran
    if make_case in NOTHING_MADE:
        assert set(root.rglob("*")) == paths_before  # no log folder, checkpoint folder or half-written data


def test_a_checkpoint_is_checked_against_the_model_before_the_model_is_allocated(earlier_run, tmp_path, monkeypatch):
    """The shapes are compared on the meta device: refusing the n_embd=4096 checkpoint costs no gigabytes."""
    import resource

    root = tmp_path / "run"
    shutil.copytree(earlier_run, root)
    monkeypatch.chdir(root)
    args = ckpt_hparams_say_a_huge_model(root)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    assert run_cli_in_process(args) == 2
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak < 500_000  # KB; the model would take 2 GB


def test_the_advice_of_the_refusal_works(earlier_run, tmp_path, monkeypatch):
    """`prepare ... --overwrite` (a bare flag, as the message says) replaces the folder."""
    root = tmp_path / "run"
    shutil.copytree(earlier_run, root)
    monkeypatch.chdir(root)
    (root / "other.txt").write_text(synthetic_text(seed=3))
    assert run_cli_in_process(["prepare", "--source", "other.txt", "--out", "data/tiny", "--overwrite"]) == 0
    assert '"corpus": "other.txt"' in (root / "data/tiny/meta.json").read_text()
