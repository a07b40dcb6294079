"""files.py: the one atomic-write helper and the one cleaner of stale temporaries."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import pytest

from gpt_lightning import files


def dead_pid() -> int:
    """The pid of a process that has exited (the OS does not reuse it at once)."""
    out = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    return int(out.stdout)


def test_atomic_write_replaces_the_file_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "sub" / "meta.json"  # the folder is made
    with files.atomic_write(path, "w") as f:
        f.write("new")
        assert not path.exists()  # not in place before the block ends
        assert f.name == str(files.temporary_path(path))
    assert path.read_text() == "new"
    assert sorted(p.name for p in path.parent.iterdir()) == ["meta.json"]


@pytest.mark.parametrize("failure", [OSError(28, "No space left on device"), KeyboardInterrupt()])
def test_atomic_write_keeps_the_old_file_on_failure(tmp_path, failure):
    path = tmp_path / "train.bin"
    path.write_bytes(b"old")
    with pytest.raises(type(failure)):
        with files.atomic_write(path) as f:
            f.write(b"half of the new")
            raise failure
    assert path.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["train.bin"]


def test_atomic_write_keeps_the_old_file_when_the_rename_fails(tmp_path, monkeypatch):
    path = tmp_path / "last.ckpt"
    path.write_bytes(b"old")

    def failing_replace(src, dst):
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(files.os, "replace", failing_replace)
    with pytest.raises(OSError):
        with files.atomic_write(path) as f:
            f.write(b"new")
    monkeypatch.undo()
    assert path.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]


def test_cleaner_removes_only_temporaries_of_dead_processes_on_this_host(tmp_path):
    host = socket.gethostname()
    dead = tmp_path / f".train.bin{files.TMP_MARK}{dead_pid()}-{host}"
    alive = tmp_path / f".val.bin{files.TMP_MARK}{os.getpid()}-{host}"  # a writer still running here
    elsewhere = tmp_path / f".last.ckpt{files.TMP_MARK}{dead_pid()}-not-{host}"  # maybe running on another node
    kept = [tmp_path / "train.bin", tmp_path / "meta.json", tmp_path / "notes.tmp"]
    for p in [dead, alive, elsewhere, *kept]:
        p.write_bytes(b"x")
    files.remove_stale_temporaries(tmp_path)
    assert not dead.exists()
    assert all(p.exists() for p in [alive, elsewhere, *kept])


def test_every_writer_uses_the_one_temporary_name(tmp_path, monkeypatch):
    """A download, tiktoken's cache and a checkpoint all go through atomic_write (one temp-name scheme)."""
    import torch

    from gpt_lightning.train.safety import AtomicCheckpointIO

    opened = []
    real = files.AtomicFile.__init__

    def spy(self, path, mode="wb"):
        real(self, path, mode)
        opened.append(self.tmp.name)

    monkeypatch.setattr(files.AtomicFile, "__init__", spy)
    AtomicCheckpointIO().save_checkpoint({"w": torch.ones(2)}, tmp_path / "last.ckpt")
    assert opened == [files.temporary_path(tmp_path / "last.ckpt").name]
    assert torch.load(tmp_path / "last.ckpt")["w"].sum() == 2

    import contextlib
    import hashlib
    import io

    from gpt_lightning.data import sources

    body = b"First Citizen:\n"
    monkeypatch.setattr(sources.urllib.request, "urlopen", lambda url, timeout: contextlib.closing(io.BytesIO(body)))
    sources.download("https://example.invalid/input.txt", tmp_path / "input.txt", hashlib.sha256(body).hexdigest())
    assert opened[-1] == files.temporary_path(tmp_path / "input.txt").name
    assert (tmp_path / "input.txt").read_bytes() == body

    from gpt_lightning import tokenizer

    if tokenizer.offline_gpt2_files() is not None:
        monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path / "cache"))
        assert tokenizer.seed_tiktoken_cache()
        cached = sorted((tmp_path / "cache").iterdir())
        assert len(cached) == 2 and sorted(opened[-2:]) == sorted(files.temporary_path(p).name for p in cached)


def test_cleaner_removes_a_killed_exports_staging_folder_and_puts_back_the_export_it_swapped_out(tmp_path):
    host = socket.gethostname()
    staging = tmp_path / f".exported{files.EXPORT_MARK}{dead_pid()}-{host}"
    swapped_out = tmp_path / f".exported{files.REPLACED_MARK}{dead_pid()}-{host}"  # killed between the two renames
    running = tmp_path / f".other{files.EXPORT_MARK}{os.getpid()}-{host}"
    for folder in (staging, swapped_out, running):
        folder.mkdir()
        (folder / "config.json").write_text("{}")
    files.remove_stale_temporaries(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["exported", running.name])
    assert (tmp_path / "exported" / "config.json").read_text() == "{}"
