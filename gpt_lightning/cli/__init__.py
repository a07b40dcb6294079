"""The command line: `python -m gpt_lightning SUBCOMMAND ...`, one module per subcommand in this folder.

`fit`, `validate`, `test` and `predict` are the LightningCLI in fit.py. The others (prepare.py, generate.py,
export.py, doctor.py, evaluate.py, and `bench`, the optional benchmarks/training.py) each have a `main(args)` over a
typed function that jsonargparse turns into options; they are imported only when used, so `generate` or `prepare`
start without loading Lightning.
"""

from __future__ import annotations

import importlib
import sys
from typing import Optional

from gpt_lightning.errors import reported_user_errors

LIGHTNING_SUBCOMMANDS = ("fit", "validate", "test", "predict")
# Subcommands that are not LightningCLI ones: each is MODULE.main(args). `bench` is a tool above the commands (it
# runs fit's CLI), so it is named here rather than imported: commands never import the benchmarks.
EXTRA_SUBCOMMANDS = {
    "prepare": "gpt_lightning.cli.prepare",
    "generate": "gpt_lightning.cli.generate",
    "export": "gpt_lightning.cli.export",
    "bench": "gpt_lightning.benchmarks.training",
    "doctor": "gpt_lightning.cli.doctor",
    "evaluate": "gpt_lightning.cli.evaluate",
}

USAGE = f"""usage: python -m gpt_lightning SUBCOMMAND [options]

subcommands:
  {", ".join(LIGHTNING_SUBCOMMANDS)}   LightningCLI: --config configs/NAME.yaml, --model.*, --data.*, --trainer.*
  {", ".join(EXTRA_SUBCOMMANDS)}   see `python -m gpt_lightning SUBCOMMAND --help`
"""


def main(argv: Optional[list[str]] = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    with reported_user_errors():
        if args and args[0] in EXTRA_SUBCOMMANDS:
            importlib.import_module(EXTRA_SUBCOMMANDS[args[0]]).main(args[1:])
        elif not args or args[0] in ("-h", "--help"):
            print(USAGE)
        else:
            from gpt_lightning.cli.fit import GPTLightningCLI

            GPTLightningCLI(args=argv)  # None: LightningCLI reads sys.argv itself
