"""`python -m gpt_lightning export`: a checkpoint out as a Hugging Face GPT-2 model folder, or as nanoGPT's ckpt.pt."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Literal, Optional

from gpt_lightning.errors import UserError, caused_by_full_disk, disk_full_message
from gpt_lightning.files import EXPORT_MARK, REPLACED_MARK, remove_stale_temporaries


def export(
    *,
    ckpt_path: Path,
    out: Path,
    format: Literal["hf", "nanogpt"] = "hf",
    meta: Optional[Path] = None,
    dataset: Optional[str] = None,
    overwrite: bool = False,
) -> Path:
    """Export a checkpoint written by `fit` (or nanoGPT's) as a Hugging Face GPT-2 folder or as nanoGPT's ckpt.pt.

    `--format hf`: the folder loads with `transformers.AutoModelForCausalLM.from_pretrained(out)` as a
    GPT2LMHeadModel and gives the same logits as the checkpoint; it also works as `--model.init_from=out`.
    `--format nanogpt`: out/ckpt.pt as nanoGPT's train.py writes it (model, optimizer, model_args, iter_num,
    best_val_loss, config), which nanoGPT's sample.py and `train.py --init_from=resume` load, plus out/meta.pkl
    for a character model (nanoGPT's sample.py reads it from data/<dataset>/meta.pkl).

    Args:
        ckpt_path: a .ckpt file (last.ckpt, best-*.ckpt), or nanoGPT's ckpt.pt.
        out: folder to write into (hf: config.json, model.safetensors and, for GPT-2 BPE models, tokenizer files;
            nanogpt: ckpt.pt and, for character models, meta.pkl).
        format: `hf` (Hugging Face GPT-2) or `nanogpt` (nanoGPT's ckpt.pt).
        meta: for nanoGPT's ckpt.pt as input: its dataset's meta.pkl (or data folder); otherwise found as nanoGPT's
            sample.py finds it.
        dataset: with --format nanogpt, the name written as config['dataset'] (sample.py then reads
            data/<dataset>/meta.pkl); default: the name of the folder `fit` read the data from.
        overwrite: replace what a non-empty --out holds (an earlier export); without it such a folder is refused.
            The new export is built beside it and swapped in whole, so a failed export leaves the old one intact.
    """
    from gpt_lightning.weights.checkpoint import read_gpt_checkpoint
    from gpt_lightning.weights.formats import NANOGPT, choose_format
    from gpt_lightning.weights.hf import HF_FORMATS
    from gpt_lightning.weights.nanogpt import check_nanogpt_schedule
    from gpt_lightning.weights.state_dict import check_finite

    out, ckpt_path = Path(out).expanduser(), Path(ckpt_path).expanduser()
    meta = Path(meta).expanduser() if meta is not None else None
    check_out_folder(out, overwrite, ckpt_path)
    if out.parent.is_dir():
        remove_stale_temporaries(out.parent)  # an export killed half-way (an earlier export it swapped out goes back)
    config, sd, tokenizer, checkpoint = read_gpt_checkpoint(ckpt_path, meta, tokenizer_required=False)
    formats = HF_FORMATS if format == "hf" else [NANOGPT]
    choose_format(config, formats, f"--format {format}")  # before anything is written: one sentence if it cannot
    if format == "nanogpt":
        check_nanogpt_schedule(checkpoint.get("hyper_parameters") or {})
    check_finite(sd, f"The weights in {ckpt_path}")  # before a staging folder is made
    with replaced_folder(out) as staging:
        if format == "hf":
            from gpt_lightning.weights.hf import export_model

            export_model(config, sd, staging, tokenizer)
        else:
            export_nanogpt(ckpt_path, checkpoint, config, sd, tokenizer, out, dataset, staging)
    return out


def check_out_folder(out: Path, overwrite: bool, ckpt_path: Optional[Path] = None) -> None:
    """Refuse an --out that is a file, or a folder with files in it unless --overwrite: an export never replaces
    what a user has without being asked to. Even with --overwrite, only an earlier export is replaced: never the
    working folder or one above it, a folder holding the checkpoint being exported, or a run's folder."""
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} is a file; export writes a folder: choose another --out.")
    here, target = Path.cwd().resolve(), out.resolve()
    if target == here or target in here.parents:
        raise UserError(
            f"--out {out} is the working folder or a folder above it, which an export would replace; choose a new "
            "folder, e.g. --out exported."
        )
    if ckpt_path is not None and target in ckpt_path.resolve().parents:
        raise UserError(f"--out {out} holds the checkpoint being exported ({ckpt_path}); choose another --out.")
    if not out.is_dir() or not any(out.iterdir()):
        return
    found = sorted(p.name for p in out.iterdir())
    if not overwrite:
        raise UserError(
            f"--out {out} is not empty ({', '.join(found[:3])}{', ...' if len(found) > 3 else ''}); pass --overwrite "
            "to replace its contents, or choose another --out."
        )
    refuse_unless_earlier_export(out)


def refuse_unless_earlier_export(out: Path) -> None:
    """--overwrite replaces an earlier export only: files, no folders, with an export's own files among them
    (config.json + model.safetensors, or nanoGPT's ckpt.pt), and no run's checkpoints or run lock."""
    from gpt_lightning.train.runlock import LOCK_NAME

    entries = sorted(out.iterdir())
    names = {p.name for p in entries}
    run_files = [p.name for p in entries if p.suffix == ".ckpt" or p.name == LOCK_NAME]
    if run_files:
        raise UserError(
            f"--out {out} holds a training run's files ({', '.join(run_files[:3])}), which --overwrite never replaces; "
            "choose another --out."
        )
    folders = [p.name for p in entries if p.is_dir() or not p.is_file()]
    is_export = {"config.json", "model.safetensors"} <= names or "ckpt.pt" in names
    if folders or not is_export:
        what = f"holds {', '.join(folders[:3])}, which no export writes" if folders else "holds no earlier export"
        raise UserError(
            f"--out {out} {what}; --overwrite only replaces an earlier export (config.json and model.safetensors, "
            "or ckpt.pt): choose another --out."
        )


@contextlib.contextmanager
def replaced_folder(out: Path) -> Iterator[Path]:
    """A new, empty folder beside `out` to write into; when the block ends, it takes `out`'s place by renames (the
    old folder and every file in it go, so no stale file of an earlier export is left beside the new one). If
    the block fails, the new folder is removed and `out` is left as it was. Files get the mode a new file gets
    under the umask (safetensors writes 0600)."""
    out = out.resolve()
    tag = f"{os.getpid()}-{socket.gethostname()}"
    staging, old = out.with_name(f".{out.name}{EXPORT_MARK}{tag}"), out.with_name(f".{out.name}{REPLACED_MARK}{tag}")
    out.parent.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    try:
        try:
            yield staging
        except Exception as e:  # safetensors' SafetensorError and torch's "unexpected pos" say a full disk too
            if caused_by_full_disk(e):  # name the folder: the temporary names mean nothing to a user
                raise UserError(disk_full_message(out)) from e
            raise
        umask = os.umask(0)
        os.umask(umask)
        for path in staging.iterdir():
            path.chmod(0o666 & ~umask)
        if out.exists():
            refuse_unless_earlier_export(out)  # again: a `fit` may have started in it while this export ran
            os.rename(out, old)
            try:
                os.rename(staging, out)
            except BaseException:
                os.rename(old, out)
                raise
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.rename(staging, out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def export_nanogpt(
    ckpt_path,
    checkpoint: dict,
    config,
    sd: dict,
    tokenizer: Optional[dict],
    out: Path,
    dataset: Optional[str],
    write_to: Optional[Path] = None,
) -> Path:
    """out/ckpt.pt (+ out/meta.pkl for a character model) from a checkpoint already read (written into `write_to`,
    when given, which becomes `out` later)."""
    import torch

    from gpt_lightning.files import atomic_write
    from gpt_lightning.meta_pkl import tokenizer_from_meta_pkl, write_meta_pkl
    from gpt_lightning.weights.nanogpt import SCHEDULE_SETTINGS, is_nanogpt_checkpoint, to_nanogpt_checkpoint
    from gpt_lightning.weights.state_dict import check_state_dict

    sd = check_state_dict(sd, config, f"The weights in {ckpt_path}")
    if is_nanogpt_checkpoint(checkpoint):  # nanoGPT in, nanoGPT out: its own step and settings
        theirs = checkpoint.get("config") if isinstance(checkpoint.get("config"), dict) else {}
        dataset = dataset or theirs.get("dataset") or "openwebtext"
        step, train_config, optimizer = checkpoint.get("iter_num", 0), theirs, None
        best = checkpoint.get("best_val_loss")
    else:
        hparams = checkpoint.get("hyper_parameters") or {}
        data_dir = (checkpoint.get("datamodule_hyper_parameters") or {}).get("data_dir")
        dataset = dataset or (Path(data_dir).name if data_dir else None) or out.name
        train_config = {name: hparams[ours] for name, ours in SCHEDULE_SETTINGS.items() if ours in hparams}
        step = int(checkpoint.get("global_step", 0))
        best = _best_val_loss(checkpoint)
        optimizer = (checkpoint.get("optimizer_states") or [None])[0]
    ckpt = to_nanogpt_checkpoint(
        config,
        sd,
        dataset=dataset,
        iter_num=step,
        best_val_loss=best,
        optimizer_state=optimizer,
        train_config={**train_config, "init_from": "resume"},
    )
    if is_nanogpt_checkpoint(checkpoint) and isinstance(checkpoint.get("optimizer"), dict):
        ckpt["optimizer"] = checkpoint["optimizer"]  # already numbered as nanoGPT numbers it
    folder = write_to or out
    folder.mkdir(parents=True, exist_ok=True)
    with atomic_write(folder / "ckpt.pt") as f:
        torch.save(ckpt, f)
    if tokenizer and tokenizer.get("kind") == "char":
        write_meta_pkl(folder / "meta.pkl", tokenizer["chars"])
        there = Path("data") / dataset / "meta.pkl"  # where sample.py looks, from the folder it runs in
        if not there.is_file() or tokenizer_from_meta_pkl(there) != tokenizer:
            print(
                f"note: nanoGPT's sample.py reads data/{dataset}/meta.pkl (relative to the folder it runs in): "
                f"copy {out / 'meta.pkl'} there.",
                file=sys.stderr,
            )
    elif not tokenizer or tokenizer.get("kind") != "gpt2":
        print("note: the checkpoint does not say its tokenizer; nanoGPT will assume GPT-2's BPE.", file=sys.stderr)
    return out


def _best_val_loss(checkpoint: dict) -> Optional[float]:
    """The best val/loss a ModelCheckpoint callback recorded in a Lightning checkpoint, if any."""
    for key, state in (checkpoint.get("callbacks") or {}).items():
        if str(key).startswith("ModelCheckpoint") and state.get("best_model_score") is not None:
            return float(state["best_model_score"])
    return None


def main(args: list[str]) -> None:
    from jsonargparse import CLI

    # `--overwrite` alone means true (jsonargparse wants a value), as in prepare
    args = [
        "--overwrite=true" if a == "--overwrite" and (i + 1 == len(args) or args[i + 1].startswith("-")) else a
        for i, a in enumerate(args)
    ]
    out = CLI(export, args=args, prog="python -m gpt_lightning export", exit_on_error=False)
    print(f"exported to {out}: " + ", ".join(sorted(p.name for p in Path(out).iterdir())))
