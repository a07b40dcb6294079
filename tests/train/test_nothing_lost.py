"""Nothing a user has is lost or silently changed (issue 16), through the real entry point in this process: a
config.yaml in the working directory, an earlier export, a full disk in prepare, checkpoint saving and export."""

from __future__ import annotations

import errno
import io
import os
import shutil
import stat
from pathlib import Path

import pytest

from helpers import run_cli_in_process

FIT = ["fit", "--config", "tiny.yaml"]


@pytest.fixture
def root(earlier_run, tmp_path, monkeypatch) -> Path:
    root = tmp_path / "run"
    shutil.copytree(earlier_run, root)
    monkeypatch.chdir(root)
    return root


def no_space_after(limit: int):
    """A stand-in for `open` in gpt_lightning.files: binary files whose writes fail with ENOSPC past `limit`
    bytes, as on a full disk."""

    class FullDisk(io.FileIO):
        written = 0

        def write(self, data) -> int:
            FullDisk.written += len(data)
            if FullDisk.written > limit:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            return super().write(data)

    def full_open(path, mode="r", **kwargs):
        if "b" not in mode:
            return open(path, mode, **kwargs)
        return FullDisk(path, mode.replace("b", ""))

    return full_open


# ---------------------------------------------------------------- config.yaml in the working directory


@pytest.mark.parametrize(
    "args",
    [
        [*FIT, "--trainer.logger=false", "--trainer.max_steps=1", "--checkpoint.dirpath", "out/nolog"],
        ["validate", "--config", "tiny.yaml", "--trainer.logger=false", "--ckpt_path", "out/ckpt/last.ckpt"],
        [*FIT, "--trainer.logger=[]", "--trainer.max_steps=1", "--checkpoint.dirpath", "out/nolog"],
        ["validate", "--config", "tiny.yaml", "--trainer.logger=[]", "--ckpt_path", "out/ckpt/last.ckpt"],
    ],
    ids=["fit", "validate", "fit-empty-list", "validate-empty-list"],
)
def test_a_config_yaml_in_the_working_directory_survives_a_run_without_logger(root, args):
    mine = "# my own settings, written by hand\nmodel:\n  n_layer: 2\n"
    (root / "config.yaml").write_text(mine)
    assert run_cli_in_process(args) == 0
    assert (root / "config.yaml").read_text() == mine


# ---------------------------------------------------------------- export


def test_export_overwrite_replaces_an_earlier_export_whole_with_normal_file_modes(root, capsys):
    old_umask = os.umask(0o022)
    try:
        earlier = root / "exported"
        earlier.mkdir()
        for name in ("config.json", "vocab.json", "merges.txt", "tokenizer_config.json", "model.safetensors"):
            (earlier / name).write_text("an earlier GPT-2 export's file")
        args = ["export", "--ckpt_path", "out/ckpt/last.ckpt", "--out", "exported"]
        assert run_cli_in_process(args) == 2  # refused without --overwrite, nothing touched
        assert (earlier / "model.safetensors").read_text() == "an earlier GPT-2 export's file"

        assert run_cli_in_process([*args, "--overwrite"]) == 0
    finally:
        os.umask(old_umask)
    # a char model: no GPT-2 tokenizer files are left beside it
    assert sorted(p.name for p in earlier.iterdir()) == ["config.json", "model.safetensors"]
    assert {stat.S_IMODE(p.stat().st_mode) for p in earlier.iterdir()} == {0o644}
    assert [p.name for p in root.iterdir() if p.name.startswith(".exported")] == []  # no staging folder left


def test_a_failed_export_leaves_the_earlier_one_intact(root, monkeypatch, capsys):
    args = ["export", "--ckpt_path", "out/ckpt/last.ckpt", "--out", "exported"]
    assert run_cli_in_process(args) == 0
    before = {p.name: p.read_bytes() for p in (root / "exported").iterdir()}

    import safetensors.torch

    def no_space(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(safetensors.torch, "save_file", no_space)
    capsys.readouterr()
    assert run_cli_in_process([*args, "--overwrite"]) == 2
    err = capsys.readouterr().err
    assert "error: The disk is full: could not write " in err and "exported" in err, err
    assert "Traceback" not in err
    assert {p.name: p.read_bytes() for p in (root / "exported").iterdir()} == before
    assert [p.name for p in root.iterdir() if p.name.startswith(".exported")] == []


# ---------------------------------------------------------------- a full disk


def test_a_full_disk_in_prepare_is_one_line_and_leaves_no_folder(root, monkeypatch, capsys):
    from gpt_lightning.data import bins

    def no_space(self, ids):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(bins.BinWriter, "write", no_space)
    capsys.readouterr()
    assert run_cli_in_process(["prepare", "--source", "tiny.txt", "--out", "data/full"]) == 2
    err = capsys.readouterr().err
    assert "error: The disk is full: could not write data/full (" in err and "MB free" in err, err
    assert "Traceback" not in err
    assert not (root / "data/full").exists()  # the folder it made is gone again


def test_a_full_disk_while_saving_a_checkpoint_names_the_path_and_the_space_needed(root, monkeypatch, capsys):
    from gpt_lightning import files

    monkeypatch.setattr(files, "open", no_space_after(4096), raising=False)
    capsys.readouterr()
    status = run_cli_in_process([*FIT, "--checkpoint.dirpath", "out/full"])
    err = capsys.readouterr().err
    assert status == 2, err[-3000:]
    assert "error: The disk is full: could not write out/full/last.ckpt (about 0.3 MB needed, " in err, err[-3000:]
    assert "unexpected pos" not in err and "Traceback" not in err
    assert not list((root / "out/full").glob(".*.tmp-*"))  # the half-written temporary is gone
    assert not (root / "out/full/last.ckpt").exists()


def test_a_partial_write_in_prepare_is_a_full_disk_naming_the_folder(root, monkeypatch, capsys):
    """numpy's tofile reports a full disk as `OSError: 360000 requested and 30720 written`, without an errno."""
    from gpt_lightning.data import bins

    def partial_write(self, ids):
        raise OSError("360000 requested and 30720 written")

    monkeypatch.setattr(bins.BinWriter, "write", partial_write)
    capsys.readouterr()
    assert run_cli_in_process(["prepare", "--source", "tiny.txt", "--out", "data/full"]) == 2
    err = capsys.readouterr().err
    assert "error: The disk is full: could not write data/full (" in err and "Traceback" not in err, err
    assert not (root / "data/full").exists()


def test_a_full_disk_in_safetensors_export_is_one_line_naming_the_folder(root, monkeypatch, capsys):
    """safetensors' Rust writer says ENOSPC as `SafetensorError: ... No space left on device (os error 28)`."""
    import safetensors.torch
    from safetensors import SafetensorError

    def no_space(*args, **kwargs):
        raise SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)")

    monkeypatch.setattr(safetensors.torch, "save_file", no_space)
    capsys.readouterr()
    assert run_cli_in_process(["export", "--ckpt_path", "out/ckpt/last.ckpt", "--out", "exported"]) == 2
    err = capsys.readouterr().err
    assert f"error: The disk is full: could not write {root / 'exported'} (" in err and "Traceback" not in err, err
    assert not (root / "exported").exists() and not [p for p in root.iterdir() if p.name.startswith(".exported")]


def test_a_full_disk_in_nanogpt_export_is_one_line_not_unexpected_pos(root, monkeypatch, capsys):
    from gpt_lightning import files

    monkeypatch.setattr(files, "open", no_space_after(4096), raising=False)
    capsys.readouterr()
    args = ["export", "--ckpt_path", "out/ckpt/last.ckpt", "--out", "exported", "--format", "nanogpt"]
    assert run_cli_in_process(args) == 2
    err = capsys.readouterr().err
    assert f"error: The disk is full: could not write {root / 'exported'} (" in err, err
    assert "unexpected pos" not in err and "Traceback" not in err
    assert not (root / "exported").exists()


def test_a_full_disk_when_writing_the_lock_names_the_lock_not_the_working_folder(root, monkeypatch, capsys):
    from gpt_lightning.train import runlock

    def no_space(fd, data, offset):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(runlock.os, "pwrite", no_space)
    capsys.readouterr()
    assert run_cli_in_process([*FIT, "--checkpoint.dirpath", "out/full"]) == 2
    err = capsys.readouterr().err
    assert "error: The disk is full: could not write out/full/run.lock (" in err and "Traceback" not in err, err


# ---------------------------------------------------------------- `~` in a path option


@pytest.mark.slow
def test_a_checkpoint_folder_under_home_gets_every_file_and_resumes_from_another_folder(root, tmp_path, monkeypatch):
    """last.ckpt and run.lock go where Lightning puts the best checkpoint ($HOME/runs/x, not a literal ./~/runs/x),
    and `--ckpt_path last` finds them from another working folder."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    args = [*FIT, "--checkpoint.dirpath=~/runs/x", "--trainer.logger=false"]
    assert run_cli_in_process([*args, "--trainer.max_steps=1"]) == 0
    folder = tmp_path / "home" / "runs" / "x"
    assert {"last.ckpt", "run.lock"} <= {p.name for p in folder.iterdir()}
    assert any(p.name.startswith("best-") for p in folder.iterdir())
    assert not (root / "~").exists()
    elsewhere = tmp_path / "elsewhere"
    shutil.copytree(root, elsewhere, ignore=shutil.ignore_patterns("out"))
    monkeypatch.chdir(elsewhere)
    assert run_cli_in_process([*args, "--trainer.max_steps=2", "--ckpt_path", "last"]) == 0
    import torch

    assert torch.load(folder / "last.ckpt", weights_only=True)["global_step"] == 2


def test_export_and_generate_expand_home(root, tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    shutil.copytree(root / "out" / "ckpt", tmp_path / "home" / "ckpt")
    assert run_cli_in_process(["export", "--ckpt_path", "~/ckpt/last.ckpt", "--out", "~/exported"]) == 0
    assert (tmp_path / "home" / "exported" / "model.safetensors").is_file() and not (root / "~").exists()
    assert run_cli_in_process(["generate", "--ckpt_path", "~/ckpt", "--max_new_tokens", "2", "--prompt", "a"]) == 0
