"""Errors a user can cause, and how the command line reports them.

A `UserError` carries one sentence that says what is wrong and how to fix it. The entry point prints it
without a traceback (set GPT_LIGHTNING_TRACEBACK=1 to see one) and exits with status 2. The same goes for
what the file system refuses (a full disk, no permission, a file where a folder should be) and for Lightning's
own MisconfigurationException, whose messages are sentences about the user's settings; Ctrl-C prints one
line and exits with 130.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import shutil
import signal
import sys
import threading
from collections.abc import Iterator
from typing import Optional

INTERRUPTED = 130  # 128 + SIGINT, what a shell reports for a program stopped by Ctrl-C


class UserError(Exception):
    """Something the user can fix: a bad path, a bad config, corrupt or mismatched data, no network."""


@contextlib.contextmanager
def sigterm_as_exit() -> Iterator[None]:
    """SIGTERM (`kill PID`) as an exception in the main thread, so that what a command cleans up after Ctrl-C (its
    temporaries, a folder it made, its worker processes) is cleaned up after SIGTERM too: one line, status 143. The
    default action would end the process at once, and its workers would print tracebacks into a closed pipe."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum: int, frame) -> None:
        sys.stderr.write("\nSIGTERM received: stopping.\n")
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def free_space(path) -> Optional[int]:
    """Bytes free on the file system holding `path` (or its nearest existing parent); None if unknown."""
    path = os.path.abspath(path)
    while path and not os.path.exists(path):
        path = os.path.dirname(path)
    try:
        return shutil.disk_usage(path).free
    except OSError:
        return None


def disk_full_message(path, needed: Optional[int] = None) -> str:
    """One sentence for a write that ran out of space: the path, and the space needed where known."""
    free = free_space(path)
    amounts = []
    if needed is not None:
        amounts.append(f"about {needed / 1e6:,.1f} MB needed")
    if free is not None:
        amounts.append(f"{free / 1e6:,.1f} MB free")
    detail = f" ({', '.join(amounts)})" if amounts else ""
    return f"The disk is full: could not write {path}{detail}; free some space there or choose another folder."


# How writers that are not Python's own say "no space left": numpy's tofile ("N requested and M written", no errno)
# and safetensors' Rust writer ("... (os error 28)" for ENOSPC, 122 for a quota).
FULL_DISK_TEXTS = re.compile(r"^\d+ requested and \d+ written$|os error (28|122)\b|No space left on device")


def caused_by_full_disk(e: Optional[BaseException]) -> bool:
    """Whether a full disk (ENOSPC, or a quota) is anywhere in an exception's chain, as an OSError or as the text
    of a writer that reports it otherwise (torch's "unexpected pos" carries the OSError as its context)."""
    seen = set()
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        if (isinstance(e, OSError) and e.errno is None or type(e).__name__ == "SafetensorError") and (
            FULL_DISK_TEXTS.search(str(e))
        ):
            return True
        e = e.__cause__ or e.__context__
    return False


def os_error_message(e: OSError) -> Optional[str]:
    """One sentence for an OSError the user can fix (full disk, permissions, a path of the wrong kind), else None."""
    path = e.filename if e.filename is not None else None
    if e.errno in (errno.ENOSPC, errno.EDQUOT):
        if (
            path is None
        ):  # (a writer thread, a file descriptor): which folder is not known, and the working one is wrong
            return (
                "The disk is full: a write failed with no space left on the device; free some space where this "
                "command writes (its checkpoint, log or output folder), or choose folders on another disk."
            )
        return disk_full_message(path)
    if path is None:
        return None
    reasons = {
        errno.EACCES: "permission denied",
        errno.EPERM: "the operation is not permitted",
        errno.EROFS: "the file system is read-only",
        errno.ENOTDIR: "a part of the path is a file, not a folder",
        errno.EISDIR: "it is a folder, not a file",
        errno.EEXIST: "something already exists there",
        errno.ENOENT: "no such file or folder",
    }
    reason = reasons.get(e.errno, e.strerror or type(e).__name__)
    return f"Could not write or read {path}: {reason}; choose another path, or fix its permissions."


@contextlib.contextmanager
def reported_user_errors() -> Iterator[None]:
    """Turn a UserError (also one raised inside Lightning's or jsonargparse's calls), a file-system error the user
    can fix, or Lightning's MisconfigurationException into a one-line message on stderr and exit status 2, and
    Ctrl-C into one line and exit status 130."""
    thread_errors: list[str] = []
    previous_hook = threading.excepthook

    def thread_excepthook(args) -> None:
        # A writer thread (TensorBoard's) that hits a full disk would print its traceback; the error reaches this
        # thread too (at the logger's next write or close), which prints it as one line. Kept, in case it does not.
        message = user_message(args.exc_value) if args.exc_value is not None else None
        if message is None or os.environ.get("GPT_LIGHTNING_TRACEBACK"):
            return previous_hook(args)
        thread_errors.append(message)

    threading.excepthook = thread_excepthook
    try:
        yield
        if thread_errors:  # the command ended as if nothing had failed: it did
            print(f"error: {thread_errors[0]}", file=sys.stderr)
            raise SystemExit(2)
    except KeyboardInterrupt:
        if os.environ.get("GPT_LIGHTNING_TRACEBACK"):
            raise
        print("\ninterrupted (Ctrl-C)", file=sys.stderr)
        raise SystemExit(INTERRUPTED) from None
    except Exception as e:
        if os.environ.get("GPT_LIGHTNING_TRACEBACK"):
            raise
        message = user_message(e)
        if message is None:
            raise
        print(f"error: {message}", file=sys.stderr)
        raise SystemExit(2) from None
    finally:
        threading.excepthook = previous_hook


def user_message(e: BaseException) -> Optional[str]:
    """The one sentence to print for an exception the user can fix, or None for a bug (shown as a traceback)."""
    if isinstance(e, UserError):
        return str(e)
    if isinstance(e, OSError):
        return os_error_message(e)
    if type(e).__name__ == "MisconfigurationException":  # Lightning's: a sentence about the user's settings
        return str(e).strip().splitlines()[0]
    return None
