"""`python -m gpt_lightning export`: a checkpoint out as a Hugging Face GPT-2 model folder."""

from __future__ import annotations

from pathlib import Path

from gpt_lightning.weights.checkpoint import read_gpt_checkpoint
from gpt_lightning.weights.hf import export_model


def export(*, ckpt_path: Path, out: Path) -> Path:
    """Export a checkpoint written by `fit` as a Hugging Face GPT-2 model folder.

    The folder loads with `transformers.AutoModelForCausalLM.from_pretrained(out)` as a GPT2LMHeadModel and
    gives the same logits as the checkpoint; it also works as `--model.init_from=out`.

    Args:
        ckpt_path: a .ckpt file (last.ckpt, best-*.ckpt).
        out: folder to write config.json, model.safetensors and, for GPT-2 BPE models, tokenizer files into.
    """
    config, sd, tokenizer = read_gpt_checkpoint(ckpt_path)
    return export_model(config, sd, out, tokenizer)


def main(args: list[str]) -> None:
    from jsonargparse import CLI

    out = CLI(export, args=args, prog="python -m gpt_lightning export")
    print(f"exported to {out}: " + ", ".join(sorted(p.name for p in Path(out).iterdir())))
