"""The command line: `python -m gpt_lightning SUBCOMMAND ...`, one module per subcommand in this folder.

`fit`, `validate`, `test` and `predict` are the LightningCLI in fit.py. The others (prepare.py, generate.py,
export.py, doctor.py, evaluate.py, and `bench`, the optional benchmarks/training.py) each have a `main(args)` over a
typed function that jsonargparse turns into options; they are imported only when used, so `generate` or `prepare`
start without loading Lightning.
"""

from __future__ import annotations

import difflib
import importlib
import re
import sys
from pathlib import Path
from typing import Optional

from gpt_lightning.errors import UserError, reported_user_errors

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
        refuse_duplicate_yaml_keys()
        check_path_arguments(args)
        check_config_files(args)
        if args and args[0] in EXTRA_SUBCOMMANDS:
            from jsonargparse import ArgumentError

            try:
                importlib.import_module(EXTRA_SUBCOMMANDS[args[0]]).main(args[1:])
            except ArgumentError as e:  # the parsers are made with exit_on_error=False: one line, not the usage
                raise UserError(argument_error_message(str(e), [], args[0])) from e
        elif not args or args[0] in ("-h", "--help"):
            print(USAGE)
        elif not args[0].startswith("-") and args[0] not in LIGHTNING_SUBCOMMANDS:
            names = [*LIGHTNING_SUBCOMMANDS, *EXTRA_SUBCOMMANDS]
            close = difflib.get_close_matches(args[0], names, n=1)
            raise UserError(
                f"Unknown subcommand {args[0]!r}{f'; did you mean {close[0]}?' if close else ''} The subcommands are "
                f"{', '.join(names)} (python -m gpt_lightning --help)."
            )
        else:
            from gpt_lightning.cli.fit import GPTLightningCLI

            GPTLightningCLI(args=argv)  # None: LightningCLI reads sys.argv itself


# Options whose value is a local path that a command reads (`--data.source` may be a URL: prepare downloads it).
# (fit's --ckpt_path also takes `last`, and is checked with it: train/resume.py resolve_ckpt_path)
PATH_OPTIONS = ("--ckpt_path", "--model.init_from", "--hellaswag_path", "--eval.hellaswag_path", "--meta")


def option_values(args: list[str]) -> list[tuple[str, str]]:
    """(option, value) for each `--option value` and `--option=value` in args."""
    pairs = []
    for i, arg in enumerate(args):
        if arg.startswith("--") and "=" in arg:
            pairs.append(tuple(arg.split("=", 1)))
        elif arg.startswith("--") and i + 1 < len(args):
            pairs.append((arg, args[i + 1]))
    return pairs


def check_path_arguments(args: list[str]) -> None:
    """A path with a byte that is not UTF-8 (jsonargparse would say the option "takes another type"), and a URL
    where a local file is read (it would become `http:/...` that "does not exist"), in one sentence each."""
    for arg in args:
        try:
            arg.encode("utf-8")
        except UnicodeEncodeError:
            shown = arg.encode("utf-8", "surrogateescape")
            raise UserError(
                f"The argument {shown!r} holds a byte that is not UTF-8 text; rename that file or folder to a UTF-8 "
                "name (e.g. `convmv -f latin1 -t utf-8`) and pass the new name."
            ) from None
    for option, value in option_values(args):
        lightning_ckpt_path = option == "--ckpt_path" and args[0] in LIGHTNING_SUBCOMMANDS
        if option in PATH_OPTIONS and "://" in value and not lightning_ckpt_path:
            refuse_url(option, value)


def refuse_url(option: str, value: str) -> None:
    raise UserError(
        f"{option} {value} is a URL, and URLs are not read (a checkpoint from the network could run code, a download "
        "could stop half way): download the file first and pass its local path."
    )


def check_config_files(args: list[str]) -> None:
    """A --config that is missing, a folder or empty, in one sentence (jsonargparse says "Unexpected config" or that
    the option "takes another type")."""
    for i, arg in enumerate(args):
        if arg == "--config" and i + 1 < len(args):
            path = args[i + 1]
        elif arg.startswith("--config="):
            path = arg[len("--config=") :]
        else:
            continue
        if path.lstrip().startswith(("{", "[")):  # jsonargparse also takes the settings themselves
            continue
        file = Path(path).expanduser()
        if not file.exists():
            raise UserError(f"--config {path} does not exist; give the path of a YAML file (see configs/).")
        if file.is_dir():
            raise UserError(f"--config {path} is a folder; give the path of a YAML file in it (see configs/).")
        if file.is_file() and not file.read_bytes().strip():
            raise UserError(f"--config {path} is empty; write settings into it, or leave --config out.")


def refuse_duplicate_yaml_keys() -> None:
    """A YAML mapping with a key twice (two `model:` blocks) keeps only the last one without a word, in PyYAML and so
    in jsonargparse: refuse it (config files and option values alike), naming the key and its line."""
    from jsonargparse import get_loader, set_loader

    load = get_loader("yaml")
    if getattr(load, "refuses_duplicate_keys", False):
        return

    def yaml_load(stream):
        import yaml

        try:
            nodes = [yaml.compose(stream, Loader=yaml.SafeLoader)]
        except yaml.YAMLError:
            return load(stream)  # jsonargparse's own message (or a plain string value)
        while nodes:
            node = nodes.pop()
            if isinstance(node, yaml.MappingNode):
                keys = [k.value for k, _ in node.value if isinstance(k, yaml.ScalarNode) and k.value != "<<"]
                twice = next((k for i, k in enumerate(keys) if k in keys[:i]), None)
                if twice is not None:
                    lines = [k.start_mark.line + 1 for k, _ in node.value if getattr(k, "value", None) == twice]
                    raise UserError(
                        f"The YAML settings give {twice!r} twice (lines {lines[0]} and {lines[1]}), and only the "
                        "last would count; merge them into one."
                    )
                nodes += [v for _, v in node.value]
            elif isinstance(node, yaml.SequenceNode):
                nodes += node.value
        return load(stream)

    yaml_load.refuses_duplicate_keys = True
    set_loader("yaml", yaml_load, exceptions=(__import__("yaml").YAMLError,))


def argument_error_message(message: str, known_keys: list[str], subcommand: str = "fit") -> str:
    """jsonargparse's error in one line, plus the closest valid option for a misspelled one (`model.n_layr` or
    `n_layr` -> `model.n_layer`); a value of the wrong type says which types the option takes."""
    help_hint = f"python -m gpt_lightning {subcommand} --help lists every option"
    typed = re.search(r'Parser key "([^"]+)"', message)
    if typed:
        expected = message.split("Given value type")[0]
        types = dict.fromkeys(t.replace("NoneType", "null") for t in re.findall(r"<class '(\w+)'>", expected))
        given = re.search(r"(?:Given|Got) value: (.*)", message)
        value = f" {given.group(1).strip()!r}" if given else " this value"
        takes = " or ".join(types) or "another type"
        if "float" in types and given and given.group(1).strip().lower().lstrip("+-.") in ("nan", "inf", "infinity"):
            takes = "a finite number"
        return f"--{typed.group(1)} does not accept{value}: it takes {takes} ({help_hint})."
    text = "; ".join(line.strip() for line in message.strip().splitlines()[:2] if line.strip())
    unknown = re.search(r"(?:option '|unrecognized arguments: --?)([\w.]+)", message)
    if unknown and unknown.group(1) not in known_keys:
        wrong = unknown.group(1)
        leaves = {key.rsplit(".", 1)[-1]: key for key in known_keys}
        close = difflib.get_close_matches(wrong, known_keys, n=1, cutoff=0.75)
        close = close or [leaves[m] for m in difflib.get_close_matches(wrong.rsplit(".", 1)[-1], list(leaves), n=1)]
        if close:
            return f"{text}; did you mean {close[0]}? ({help_hint})"
    return f"{text} ({help_hint})"
