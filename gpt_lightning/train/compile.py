"""torch.compile for training, with a way back: a model that fails to compile trains in eager mode instead."""

from __future__ import annotations

import warnings
from typing import Literal, Union

import torch


def wants_compile(setting: Union[bool, Literal["auto"]], device: torch.device) -> bool:
    """`--model.compile`: True compiles, `auto` compiles on CUDA only (on CPU compiling costs more than it saves)."""
    return setting is True or (setting == "auto" and device.type == "cuda")


class CompiledWithEagerFallback:
    """Calls `torch.compile(model)`; if the first compiled training call fails (no compiler, an unsupported GPU,
    an op the compiler cannot handle), warns once and calls the eager model from then on.

    The compiled wrapper is kept here, outside the module tree, so state_dict keys stay free of `_orig_mod.`,
    and the eager model stays callable without undoing anything inside torch.
    """

    def __init__(self, model: torch.nn.Module) -> None:
        self.model = model
        self.compiled = torch.compile(model)  # compiles lazily, at the first call
        self.unchecked = True  # no train-mode call has succeeded yet

    def __call__(self, *args, **kwargs):
        if self.compiled is None:
            return self.model(*args, **kwargs)
        if not self.unchecked:
            return self.compiled(*args, **kwargs)
        try:
            out = self.compiled(*args, **kwargs)
        except Exception as err:  # torch.compile compiles at the first call: its failures surface here
            self.compiled = None
            first_line = (str(err).strip().splitlines() or [""])[0][:300]
            warnings.warn(
                f"torch.compile failed, training continues in eager mode ({type(err).__name__}: {first_line})",
                stacklevel=2,
            )
            return self.model(*args, **kwargs)
        self.unchecked = not self.model.training  # a train-mode call compiles a graph of its own
        return out
