"""nanoGPT's `meta.pkl` (a character vocabulary: {vocab_size, itos, stoi}), read without running code.

A pickle runs whatever code it names when unpickled. It is read here by an unpickler that can build nothing but
the builtin containers, str and int, from a regular file of at most 1 MB whose memo and object graph are checked
first, so a crafted file is refused in one sentence, never run, and never hangs. Next to tokenizer.py because a
meta.pkl is a tokenizer: nanoGPT data folders (data/) and checkpoints (weights/) both read it.
"""

from __future__ import annotations

import io
import os
import pickle
import pickletools
from pathlib import Path
from typing import Any, Union

from gpt_lightning.errors import UserError
from gpt_lightning.files import atomic_write

META_PKL = "meta.pkl"
MAX_META_PKL_BYTES = 1 << 20  # a character vocabulary's meta.pkl takes a few KB; a bigger one is not nanoGPT's
GPT2_BPE_VOCAB = 50257  # nanoGPT assumes GPT-2's BPE without meta.pkl; a smaller vocabulary cannot be that
GPT2_TOKENIZER = {"kind": "gpt2", "encoding": "gpt2"}
PathLike = Union[str, os.PathLike]


class _ContainersOnly(pickle.Unpickler):
    """Unpickles dicts, lists, tuples, sets, str and int; refuses every class or function a file names.

    Builtin containers and scalars are pickle opcodes of their own; only objects built by calling something
    (a class, `os.system`, ...) go through find_class, so refusing there refuses all code. Sets are the one
    builtin container that older pickle protocols build by calling `set`."""

    ALLOWED = {("builtins", "set"), ("builtins", "frozenset")}

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in self.ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"it names {module}.{name}")

    def persistent_load(self, pid: Any) -> Any:
        raise pickle.UnpicklingError("it refers to a persistent object")


def _check_plain(value: Any, path: Path) -> None:
    """Refuse any type beyond the builtin containers, str and int (bool is an int), and a container met twice: a
    pickle can make a list that holds itself, or 60 levels of `b = [b, b]` (2**60 paths in 1 KB), which a walk
    would never finish; nanoGPT's meta.pkl is a tree (its strings may be shared, its containers never are)."""
    stack, seen = [value], set()
    while stack:
        v = stack.pop()
        if isinstance(v, (dict, list, tuple, set, frozenset)):
            if v and id(v) in seen:  # (empty ones hold nothing, and `()` is one shared object)
                raise UserError(
                    f"{path} holds a container inside itself or twice over, which nanoGPT's meta.pkl never does: "
                    "pass the meta.pkl that nanoGPT's data/<dataset>/prepare.py wrote."
                )
            seen.add(id(v))
            stack.extend([*v.keys(), *v.values()] if isinstance(v, dict) else v)
        elif not isinstance(v, (str, int)):
            raise UserError(
                f"{path} holds a {type(v).__name__}, which nanoGPT's meta.pkl never does; only dicts, lists, str and "
                "int are read from a meta.pkl: pass the meta.pkl that nanoGPT's data/<dataset>/prepare.py wrote."
            )


def _check_memo_indices(data: bytes) -> None:
    """Raise ValueError for a memo index beyond the number of opcodes: the unpickler sizes its memo by the largest
    index, so 9 bytes naming index 2**28 would take gigabytes before any error (a real pickle numbers its memo
    entries 0, 1, 2, ...)."""
    ops = 0
    for opcode, arg, _ in pickletools.genops(data):
        ops += 1
        if opcode.name in ("PUT", "BINPUT", "LONG_BINPUT") and int(arg) > ops:
            raise ValueError(f"memo index {arg} in a {len(data)}-byte file")


def read_meta_pkl(path: PathLike) -> dict:
    """nanoGPT's meta.pkl ({vocab_size, itos, stoi}), checked; unpickled without running code, and only when it
    is a regular file of at most MAX_META_PKL_BYTES (a character vocabulary takes a few KB)."""
    path = Path(path)
    try:
        if path.exists() and not path.is_file():
            raise UserError(f"{path} is not a regular file; pass nanoGPT's data/<dataset>/meta.pkl.")
        if path.stat().st_size > MAX_META_PKL_BYTES:
            raise UserError(
                f"{path} is {path.stat().st_size:,} bytes, far more than nanoGPT's meta.pkl of a character vocabulary "
                f"(a few KB; at most {MAX_META_PKL_BYTES:,} are read): pass the meta.pkl nanoGPT's prepare.py wrote."
            )
        data = path.read_bytes()
    except OSError as e:
        raise UserError(f"Could not read {path} ({type(e).__name__}); pass nanoGPT's data/<dataset>/meta.pkl.") from e
    try:
        _check_memo_indices(data)
        meta = _ContainersOnly(io.BytesIO(data)).load()
    except Exception as e:  # a refused class, a truncated or foreign file: many exception types, one fix
        raise UserError(
            f"{path} is not a plain nanoGPT meta.pkl ({type(e).__name__}: {e}); a meta.pkl may only hold dicts, "
            "lists, str and int, so nothing else is unpickled: pass the meta.pkl nanoGPT's prepare.py wrote."
        ) from None
    _check_plain(meta, path)
    if not isinstance(meta, dict) or not {"vocab_size", "itos", "stoi"} <= meta.keys():
        raise UserError(f"{path} has no vocab_size, itos and stoi; pass the meta.pkl of a nanoGPT character dataset.")
    vocab_size, itos, stoi = meta["vocab_size"], meta["itos"], meta["stoi"]
    if not isinstance(itos, dict) or not isinstance(stoi, dict) or set(itos) != set(range(len(itos))):
        raise UserError(f"{path}'s itos does not map the ids 0..N-1 to text; pass the meta.pkl of a nanoGPT dataset.")
    long = next((s for s in itos.values() if not isinstance(s, str) or len(s) != 1), None)
    if long is not None:
        raise UserError(
            f"{path} maps a token to {long!r}, not to one character; only character vocabularies (as nanoGPT's "
            "shakespeare_char) are read from meta.pkl: prepare the text with `python -m gpt_lightning prepare`."
        )
    if vocab_size != len(itos) or any(stoi.get(s) != i for i, s in itos.items()) or len(stoi) != len(itos):
        raise UserError(
            f"{path} is inconsistent (vocab_size {vocab_size}, {len(itos)} itos and {len(stoi)} stoi entries that "
            "are not each other's inverse); prepare the dataset again with nanoGPT's prepare.py."
        )
    return meta


def tokenizer_from_meta_pkl(path: PathLike) -> dict:
    """Our tokenizer meta (a char vocabulary in id order) from nanoGPT's meta.pkl."""
    meta = read_meta_pkl(path)
    return {"kind": "char", "chars": [meta["itos"][i] for i in range(meta["vocab_size"])]}


def write_meta_pkl(path: PathLike, chars: list[str]) -> None:
    """meta.pkl as nanoGPT's char prepare.py writes it, for a char vocabulary in id order."""
    meta = {"vocab_size": len(chars), "itos": dict(enumerate(chars)), "stoi": {c: i for i, c in enumerate(chars)}}
    with atomic_write(path) as f:
        pickle.dump(meta, f)


def nanogpt_meta_file(path: PathLike) -> Path:
    """An explicit meta path: the file, or a (nanoGPT data) folder's meta.pkl."""
    path = Path(path)
    return path / META_PKL if path.is_dir() else path
