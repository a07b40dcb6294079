"""torch.compile for training, with a way back: a model that fails to compile trains in eager mode instead."""

from __future__ import annotations

import warnings
from typing import Literal, Union

import torch

# torch.compile's backend. Inductor generates kernels (the speed); tests on a small CPU swap in "aot_eager", which
# traces and guards the same way (TorchDynamo, AOTAutograd) without generating code, in seconds instead of minutes.
BACKEND = "inductor"


def wants_compile(setting: Union[bool, Literal["auto"]], device: torch.device) -> bool:
    """`--model.compile`: True compiles, `auto` compiles on CUDA only (on CPU compiling costs more than it saves)."""
    return setting is True or (setting == "auto" and device.type == "cuda")


class CompiledWithEagerFallback:
    """Calls `torch.compile(model)`; if the first compiled training call fails (no compiler, an unsupported GPU,
    an op the compiler cannot handle), warns once and calls the eager model from then on.

    The compiled wrapper is kept here, outside the module tree, so state_dict keys stay free of `_orig_mod.`,
    and the eager model stays callable without undoing anything inside torch. That is also what keeps evaluation
    off the compiled graphs: HellaSwag (evaluation/loglikelihood.py) and text samples (GPT.generate_tokens) call
    the eager model's forward, whose shapes change with every batch and every generated token and would each cost
    a recompilation (build-nanogpt turned compiling off for this). Validation, with training's fixed shapes, runs
    compiled: one more graph, for eval mode without gradients, compiled once (tests/train/test_compile_evaluation.py
    counts them).
    """

    def __init__(self, model: torch.nn.Module) -> None:
        self.model = model
        self.compiled = torch.compile(model, backend=BACKEND)  # compiles lazily, at the first call
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
