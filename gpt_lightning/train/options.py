"""`--model.*` options from settings dataclasses: one source of truth for what the CLI takes.

The LightningModule's constructor lists only what is about the run (init_from, compile, ...) and takes the rest
as `**options`. `options_from(GPTConfig, OptimizerSettings, ...)` gives the class an `__init__` with one keyword
argument per field of each settings dataclass (its type, its default, and the `--help` line written under the
dataclass's `Attributes:`), which calls the constructor as written. jsonargparse (so LightningCLI),
`inspect.signature` and Lightning's save_hyperparameters all read that signature, so a field added to GPTConfig
is an option of fit, validate, resume and every checkpoint without another edit.
"""

from __future__ import annotations

import dataclasses
import inspect
import typing
from typing import Any, Optional

import docstring_parser


def field_docs(settings: type) -> dict[str, str]:
    """Each field's text under `Attributes:` in the dataclass's docstring."""
    return {p.arg_name: " ".join(p.description.split()) for p in docstring_parser.parse(settings.__doc__ or "").params}


def options_from(*settings: type, unset_is_none: tuple[type, ...] = ()):
    """Class decorator: an `__init__` taking the class's own arguments plus one keyword-only argument per field
    of each `settings` dataclass, passed on as `**options`. For the classes in unset_is_none the argument
    defaults to None, read as "the dataclass default, or the pretrained model's" (GPTConfig's fields);
    otherwise it has the field's default."""

    def decorate(cls: type) -> type:
        construct = cls.__init__
        own = [p for p in inspect.signature(construct).parameters.values() if p.kind is not p.VAR_KEYWORD][1:]
        added, lines = [], []
        for group in settings:
            hints, docs, none = typing.get_type_hints(group), field_docs(group), group in unset_is_none
            for f in dataclasses.fields(group):
                default = None if none else f.default
                annotation = Optional[hints[f.name]] if none else hints[f.name]
                added.append(
                    inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=annotation)
                )
                says_unset = "Unset:" in docs.get(f.name, "")  # the field's own words on what unset means
                unset = f" (unset: {f.default!r}, or the pretrained model's)" if none and not says_unset else ""
                lines.append(f"    {f.name}: {docs.get(f.name, '')}{unset}")
        own_hints = typing.get_type_hints(construct)
        params = [p.replace(annotation=own_hints.get(p.name, p.annotation)) for p in own] + added
        # A real function with these parameters (as dataclasses writes __init__): Lightning's save_hyperparameters
        # reads the caller's local variables by the signature's names, so they must be locals, not **options.
        names = [p.name for p in params]
        source = (
            f"def __init__(self, {', '.join(f'{n}=__defaults[{n!r}]' for n in names)}):\n"
            f"    __class__ = __cls  # as a super() call leaves it: save_hyperparameters looks for it\n"
            f"    __construct(self, {', '.join(f'{n}={n}' for n in names)})\n"
        )
        scope = {"__defaults": {p.name: p.default for p in params}, "__cls": cls, "__construct": construct}
        exec(source, scope)
        init = scope["__init__"]
        init.__signature__ = inspect.Signature(
            [inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD)] + params
        )
        init.__annotations__ = {p.name: p.annotation for p in params}
        doc = inspect.cleandoc(construct.__doc__ or "")
        init.__doc__ = doc + ("\n" if "Args:" in doc else "\n\nArgs:\n") + "\n".join(lines)
        init.__qualname__, init.__module__ = f"{cls.__qualname__}.__init__", cls.__module__
        cls.__init__ = init
        return cls

    return decorate


def pick(settings: type, options: dict[str, Any], drop_none: bool = False) -> dict[str, Any]:
    """The options that are fields of `settings` (drop_none: leaving out those unset)."""
    names = {f.name for f in dataclasses.fields(settings)}
    return {k: v for k, v in options.items() if k in names and not (drop_none and v is None)}
