"""Writing files so that a kill at any moment leaves either the old file or the new one, never half of one.

Everything the project writes (token bins, meta.json, downloads, tiktoken's cache, checkpoints, exports) goes
to a temporary file beside its target, named `.NAME.tmp-PID-HOST`, is fsynced and then renamed into place;
the rename is fsynced through the folder too. The name says whose the temporary is, so
`remove_stale_temporaries` can delete those of killed processes (SIGKILL, power loss) on this host and leave
alone those of a writer still running, here or on another node sharing the folder.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Union

TMP_MARK = ".tmp-"
# export's folders beside its --out: the new export while it is written, and the earlier one while it is swapped out
EXPORT_MARK, REPLACED_MARK = ".export-", ".replaced-"


def temporary_path(path: Path) -> Path:
    """This process's temporary name for `path`: `.NAME.tmp-PID-HOST` in the same folder (a rename within one
    file system is atomic; a move from /tmp is a copy)."""
    return path.with_name(f".{path.name}{TMP_MARK}{os.getpid()}-{socket.gethostname()}")


def fsync_folder(folder: Path) -> None:
    """Make a rename in `folder` durable (where the OS can open a folder)."""
    if not hasattr(os, "O_DIRECTORY"):
        return
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class AtomicFile:
    """A file written under its temporary name; `commit` puts it in place, `discard` removes it.

    For writers that keep a file open over a long job and commit several files together (prepare's bins);
    `atomic_write` is the one-file form.
    """

    def __init__(self, path: Union[str, Path], mode: str = "wb") -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.tmp = temporary_path(self.path)
        self.file: IO = open(self.tmp, mode, **({} if "b" in mode else {"encoding": "utf-8"}))

    def commit(self) -> None:
        self.file.flush()
        os.fsync(self.file.fileno())
        self.file.close()
        os.replace(self.tmp, self.path)
        fsync_folder(self.path.parent)

    def discard(self) -> None:
        self.file.close()
        self.tmp.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_write(path: Union[str, Path], mode: str = "wb") -> Iterator[IO]:
    """Open `path` for writing; it appears, complete, only when the block ends without an exception."""
    target = AtomicFile(path, mode)
    try:
        yield target.file
        target.commit()
    except BaseException:
        target.discard()
        raise


@contextlib.contextmanager
def atomic_path(path: Union[str, Path]) -> Iterator[Path]:
    """atomic_write for libraries that write by file name (safetensors): the temporary path to write to."""
    with atomic_write(path) as f:
        yield Path(f.name)


def copy_file(src: Union[str, Path], dest: Union[str, Path]) -> None:
    """Copy src to dest atomically."""
    with open(src, "rb") as source, atomic_write(dest) as f:
        shutil.copyfileobj(source, f)


def remove_stale_temporaries(folder: Union[str, Path]) -> None:
    """Delete the temporary files (and export's staging folders) in `folder` that a killed process left: those of
    this host whose process is gone. Those of a process still running, here or on another node sharing the
    folder, are left alone. An earlier export swapped out by a process killed before the new one took its place
    is put back, not deleted."""
    for tmp in Path(folder).glob(".*"):
        mark = next((m for m in (TMP_MARK, EXPORT_MARK, REPLACED_MARK) if m in tmp.name), None)
        if mark is None:
            continue
        name, _, owner = tmp.name[1:].rpartition(mark)
        pid, _, host = owner.partition("-")
        if host != socket.gethostname() or not pid.isdigit() or _process_alive(int(pid)):
            continue
        if mark == REPLACED_MARK and name and not (tmp.parent / name).exists():
            os.rename(tmp, tmp.parent / name)  # killed between export's two renames: the earlier export goes back
        elif tmp.is_dir() and not tmp.is_symlink():
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            tmp.unlink(missing_ok=True)


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True
