"""A full disk met by a writer thread (TensorBoard's event writer) is one line and status 2, not the thread's
traceback, and never a working folder named as the one that is full."""

from __future__ import annotations

import errno
import os
import threading

import pytest

from gpt_lightning.errors import reported_user_errors


def full_disk_in_a_thread() -> None:
    def write() -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))  # as a bare file descriptor's write: no filename

    thread = threading.Thread(target=write)
    thread.start()
    thread.join()


def test_a_full_disk_in_a_writer_thread_is_one_line_and_status_2(capsys):
    with pytest.raises(SystemExit) as exit:
        with reported_user_errors():
            full_disk_in_a_thread()
    assert exit.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and "Exception in thread" not in err
    assert err.strip().splitlines() == [
        "error: The disk is full: a write failed with no space left on the device; free some space where this "
        "command writes (its checkpoint, log or output folder), or choose folders on another disk."
    ]
    assert os.getcwd() not in err


def test_a_bug_in_a_thread_goes_to_the_hook_that_was_there(monkeypatch):
    seen = []
    monkeypatch.setattr(threading, "excepthook", lambda args: seen.append(args.exc_value))

    def bug() -> None:
        raise ZeroDivisionError("a bug")

    with reported_user_errors():
        thread = threading.Thread(target=bug)
        thread.start()
        thread.join()
    assert [type(e) for e in seen] == [ZeroDivisionError]
