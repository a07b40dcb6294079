"""What FSDP needs from the rest of training: its wrapping policy, and the matrices noted before it flattens them."""

from __future__ import annotations

import torch


def fsdp_strategy():
    """What `--trainer.strategy=fsdp` means here: Lightning's FSDPStrategy with one unit per transformer Block.
    (Lightning's plain "fsdp" makes the whole model a single unit.) The tied wte / lm_head weight lives outside
    the Blocks, so it stays in the root unit. For more options (activation checkpointing, sharded checkpoints)
    give the strategy as a class_path, as configs/gpt2_large_fsdp.yaml does."""
    from lightning.pytorch.strategies import FSDPStrategy

    from gpt_lightning.model import Block

    return FSDPStrategy(auto_wrap_policy={Block})


def matrix_ids(model: torch.nn.Module) -> set[int]:
    """ids of the parameters that are matrices (2-D or more), which nanoGPT's weight decay applies to.

    Taken before FSDP wraps the model: it flattens every parameter into a 1-D shard, but keeps the Parameter
    objects (use_orig_params=True), so these ids still find the matrices in configure_optimizers."""
    return {id(p) for p in model.parameters() if p.dim() >= 2}
