"""The command line: `python -m gpt_lightning SUBCOMMAND ...`.

`fit`, `validate`, `test` and `predict` go to the LightningCLI in lightning_cli.py. The other subcommands are
plain functions whose typed signatures jsonargparse turns into options; they are imported only when used,
so `generate` or `prepare` start without loading Lightning.
"""

from __future__ import annotations

import sys
from typing import Callable, Optional

from gpt_lightning.errors import reported_user_errors

LIGHTNING_SUBCOMMANDS = ("fit", "validate", "test", "predict")


def run_prepare(args: list[str]) -> None:
    from jsonargparse import CLI

    from gpt_lightning.prepare import prepare

    # `--source X` as README writes it (a leading positional SRC works too), and `--overwrite` alone meaning
    # true (jsonargparse wants a value)
    if args and not args[0].startswith("-"):
        args = ["--source", *args]
    args = [
        "--overwrite=true" if a == "--overwrite" and (i + 1 == len(args) or args[i + 1].startswith("-")) else a
        for i, a in enumerate(args)
    ]
    meta = CLI(prepare, args=args, as_positional=False, prog="python -m gpt_lightning prepare")
    print(
        f"{meta['source']['corpus']}: vocab {meta['vocab_size']}, {meta['train_tokens']:,} train and "
        f"{meta['val_tokens']:,} val tokens ({meta['dtype']})"
    )


def run_bench(args: list[str]) -> None:
    from gpt_lightning.benchmarks.training import main as bench_main

    bench_main(args)


def run_export(args: list[str]) -> None:
    from gpt_lightning.hf import run_export

    run_export(args)


def run_generate(args: list[str]) -> None:
    from gpt_lightning.generate import run_generate

    run_generate(args)


# Subcommands that are not LightningCLI ones: name -> function taking the remaining arguments.
EXTRA_SUBCOMMANDS: dict[str, Callable[[list[str]], None]] = {
    "prepare": run_prepare,
    "bench": run_bench,
    "generate": run_generate,
    "export": run_export,
}


USAGE = f"""usage: python -m gpt_lightning SUBCOMMAND [options]

subcommands:
  {', '.join(LIGHTNING_SUBCOMMANDS)}   LightningCLI: --config configs/NAME.yaml, --model.*, --data.*, --trainer.*
  {', '.join(EXTRA_SUBCOMMANDS)}   see `python -m gpt_lightning SUBCOMMAND --help`
"""


def main(argv: Optional[list[str]] = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    with reported_user_errors():
        if args and args[0] in EXTRA_SUBCOMMANDS:
            EXTRA_SUBCOMMANDS[args[0]](args[1:])
        elif not args or args[0] in ("-h", "--help"):
            print(USAGE)
        else:
            from gpt_lightning.lightning_cli import GPTLightningCLI

            GPTLightningCLI(args=argv)  # None: LightningCLI reads sys.argv itself
