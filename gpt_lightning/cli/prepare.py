"""`python -m gpt_lightning prepare`: text in, token bins out (the work is data/prepare.py's)."""

from __future__ import annotations


def main(args: list[str]) -> None:
    from jsonargparse import CLI

    from gpt_lightning.data.bins import summary
    from gpt_lightning.data.prepare import prepare
    from gpt_lightning.errors import sigterm_as_exit

    # `--source X` as README writes it (a leading positional SRC works too), and `--overwrite` alone meaning
    # true (jsonargparse wants a value)
    if args and not args[0].startswith("-"):
        args = ["--source", *args]
    args = [
        "--overwrite=true" if a == "--overwrite" and (i + 1 == len(args) or args[i + 1].startswith("-")) else a
        for i, a in enumerate(args)
    ]
    with sigterm_as_exit():  # `kill PID` cleans up as Ctrl-C does
        meta = CLI(prepare, args=args, as_positional=False, prog="python -m gpt_lightning prepare", exit_on_error=False)
    print(summary(meta))
