"""One run per checkpoint folder: an advisory lock held for the life of a `fit`.

Two runs writing into one folder overwrite each other's last.ckpt and each other's best checkpoints, and the check
that a folder holds no earlier run only sees the moment a run starts. So `fit` takes `run.lock` in its checkpoint
folder (fcntl.flock) before it checks or writes anything there, and keeps it until it ends. The operating system
releases a flock when its process dies, however it dies, so a crashed or killed run never leaves the folder
locked. The lock file records the run holding it (pid, host, start time, command) for the message a second run
gets. Only the first process of a run takes it: DDP's other ranks (started with the same command) share the
folder with it.
"""

from __future__ import annotations

import datetime
import errno
import json
import os
import socket
import stat
import sys
from pathlib import Path
from typing import Optional

from gpt_lightning.errors import UserError

LOCK_NAME = "run.lock"
# Variables that launchers (Lightning's, torchrun, SLURM, MPI) set to a process's rank; "0" or unset on the first.
RANK_VARIABLES = ("RANK", "LOCAL_RANK", "NODE_RANK", "GROUP_RANK", "SLURM_PROCID", "OMPI_COMM_WORLD_RANK", "PMI_RANK")


def is_first_process() -> bool:
    """Whether this is the process a run's first rank runs in (before distributed init, from the environment)."""
    return all(os.environ.get(name, "0") in ("", "0") for name in RANK_VARIABLES)


class RunLock:
    """`acquire` takes DIR/run.lock or refuses in one sentence naming the run that holds it; `release` lets go."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        self.path = self.folder / LOCK_NAME
        self.fd: Optional[int] = None
        self.created = False  # whether acquire made the folder

    def acquire(self) -> RunLock:
        try:
            import fcntl
        except ImportError:  # not POSIX: no advisory locks
            return self
        self.created = not self.folder.exists()
        self.folder.mkdir(parents=True, exist_ok=True)
        fd = self.open_regular_file()
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = self.describe_holder(fd)
            os.close(fd)
            raise UserError(
                f"{self.folder} is in use by another run ({holder}); wait for it to end or stop it, or give this run "
                "another --checkpoint.dirpath."
            ) from None
        except OSError as e:  # a file system without flock (some network mounts): run on, unprotected
            os.close(fd)
            print(f"note: could not lock {self.path} ({e.strerror}); make sure no other run uses it.", file=sys.stderr)
            return self
        holder = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "started": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
            "command": " ".join([command_name(), *sys.argv[1:]]),
        }
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, (json.dumps(holder) + "\n").encode(), 0)
        except OSError as e:  # a full disk: name the lock file (an OSError of a bare descriptor names no path)
            os.close(fd)
            raise OSError(e.errno, e.strerror, str(self.path)) from e
        self.fd = fd
        return self

    def open_regular_file(self) -> int:
        """Open (or create) run.lock itself: never through a symlink (the lock would truncate and overwrite the file
        it points to, or create its target), and never a FIFO or device (a FIFO's open would wait for a writer)."""
        refusal = UserError(
            f"{self.path} is not a regular file (a symlink, FIFO or device); delete it, and `fit` writes its own lock "
            "file there."
        )
        if self.path.is_symlink() or (self.path.exists() and not self.path.is_file()):
            raise refusal
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK, 0o666)
        except OSError as e:
            if e.errno == errno.ELOOP:  # it became a symlink since the check
                raise refusal from None
            raise
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise refusal
        return fd

    def release(self) -> None:
        if self.fd is None:
            return
        if self.created and [p.name for p in self.folder.iterdir()] == [LOCK_NAME]:
            # the run made the folder and ended before writing anything into it: leave nothing behind
            self.path.unlink(missing_ok=True)
            self.folder.rmdir()
        os.close(self.fd)  # closing the descriptor releases the flock
        self.fd = None

    @staticmethod
    def describe_holder(fd: int) -> str:
        try:
            holder = json.loads(os.pread(fd, 65536, 0).decode() or "{}")
            return f"pid {holder['pid']} on {holder['host']}, started {holder['started']}: {holder['command']}"
        except (ValueError, KeyError, TypeError, OSError):  # not JSON, or JSON but not our dict ([1,2,3], null)
            return "its lock file does not say which"


def command_name() -> str:
    """How this process was started, as a user would type it: `python -m gpt_lightning` rather than the path of
    its __main__.py."""
    argv0 = sys.argv[0] if sys.argv else ""
    return "python -m gpt_lightning" if Path(argv0).name == "__main__.py" else argv0
