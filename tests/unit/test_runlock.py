"""The checkpoint folder's run lock (train/runlock.py) without a run: a second holder is refused in one sentence that
names the first; releasing lets the next one in; a folder made only for the lock is not left behind."""

from __future__ import annotations

import os
import socket

import pytest

from gpt_lightning.errors import UserError
from gpt_lightning.train.runlock import LOCK_NAME, RunLock, is_first_process


def test_a_second_holder_is_refused_naming_the_first_then_gets_it_once_released(tmp_path):
    folder = tmp_path / "ckpt"
    folder.mkdir()
    (folder / "last.ckpt").write_bytes(b"an earlier run's")
    first = RunLock(folder).acquire()
    with pytest.raises(UserError) as refused:
        RunLock(folder).acquire()  # flock locks belong to open files: a second open in this process is refused too
    message = str(refused.value)
    assert message.startswith(f"{folder} is in use by another run (pid {os.getpid()} on {socket.gethostname()}, ")
    assert message.endswith("or give this run another --checkpoint.dirpath.")
    first.release()
    second = RunLock(folder).acquire()
    second.release()
    assert sorted(p.name for p in folder.iterdir()) == sorted([LOCK_NAME, "last.ckpt"])  # the run's files stay


def test_a_folder_made_only_for_the_lock_is_removed_again(tmp_path):
    lock = RunLock(tmp_path / "new").acquire()
    assert (tmp_path / "new" / LOCK_NAME).is_file()
    lock.release()
    assert not (tmp_path / "new").exists()


def test_only_the_first_process_of_a_run_takes_it(monkeypatch):
    for name in ("RANK", "LOCAL_RANK", "NODE_RANK", "GROUP_RANK", "SLURM_PROCID", "OMPI_COMM_WORLD_RANK", "PMI_RANK"):
        monkeypatch.delenv(name, raising=False)
    assert is_first_process()
    monkeypatch.setenv("LOCAL_RANK", "0")
    assert is_first_process()
    monkeypatch.setenv("LOCAL_RANK", "1")  # a DDP rank started by Lightning's launcher
    assert not is_first_process()


@pytest.mark.parametrize("kind", ["symlink to a file", "dangling symlink", "fifo", "folder"])
def test_a_run_lock_that_is_not_a_regular_file_is_refused_and_nothing_is_written(tmp_path, kind):
    folder, target = tmp_path / "ckpt", tmp_path / "mine.txt"
    folder.mkdir()
    lock = folder / LOCK_NAME
    if kind == "symlink to a file":
        target.write_text("the user's file")
        lock.symlink_to(target)
    elif kind == "dangling symlink":
        lock.symlink_to(target)
    elif kind == "fifo":
        os.mkfifo(lock)
    else:
        lock.mkdir()
    with pytest.raises(UserError, match=r"run.lock is not a regular file \(a symlink, FIFO or device\); delete it"):
        RunLock(folder).acquire()
    assert (target.read_text() == "the user's file") if kind == "symlink to a file" else not target.exists()


@pytest.mark.parametrize("junk", ["[1,2,3]", '"hello"', "null", "{nope", "\xff"])
def test_a_held_lock_whose_file_holds_junk_is_still_one_sentence(tmp_path, junk):
    first = RunLock(tmp_path).acquire()
    (tmp_path / LOCK_NAME).write_text(junk, encoding="latin-1")  # the same inode: the flock stays held
    with pytest.raises(UserError, match=r"is in use by another run \(its lock file does not say which\)"):
        RunLock(tmp_path).acquire()
    first.release()
