"""Log-likelihoods of continuations: the one scoring path of HellaSwag (hellaswag.py) and of the lm-evaluation-harness
backend (lm_eval_backend.py).

A request is (context tokens, continuation tokens). The model reads the last block_size + 1 tokens of context +
continuation without the last one (lm-evaluation-harness truncates the same way) and every continuation token is
scored by its log-probability given all before it. Nothing here imports Lightning or lm-eval.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Callable

import torch
from torch.nn import functional as F

from gpt_lightning.model import GPT


def window(context: list[int], continuation: list[int], block_size: int) -> tuple[list[int], list[int]]:
    """Model input and targets for one request: the last block_size + 1 tokens of context + continuation (a longer
    context is cropped from the left), the input without its last token, the targets without its first; only the
    continuation's tokens are targets, the rest are -1. A continuation longer than block_size keeps its last
    block_size tokens."""
    row = (context + continuation)[-(block_size + 1) :]
    inputs, targets = row[:-1], row[1:]
    scored = min(len(continuation), len(targets))
    return inputs, [-1] * (len(targets) - scored) + targets[len(targets) - scored :]


@dataclass(frozen=True)
class RowScore:
    logprob: float  # the sum of the scored tokens' log-probabilities
    num_tokens: int  # how many continuation tokens were scored
    greedy: bool  # every scored token is the model's argmax (lm-eval's is_greedy)


@torch.no_grad()
def score_rows(
    model: GPT,
    requests: Sequence[tuple[list[int], list[int]]],
    forward_context: Callable[[], AbstractContextManager] = contextlib.nullcontext,
) -> list[RowScore]:
    """Score a batch of (context, continuation) requests in one forward pass, right-padded to the longest row:
    attention is causal, so padding after a row's end changes nothing before it, and padded positions are no
    targets. The caller sets eval mode and chooses the batch. forward_context: e.g. autocast."""
    device = next(model.parameters()).device
    rows = [window(context, continuation, model.config.block_size) for context, continuation in requests]
    length = max(len(inputs) for inputs, _ in rows)
    idx = torch.zeros((len(rows), length), dtype=torch.long)  # (R, T)
    targets = torch.full((len(rows), length), -1, dtype=torch.long)  # (R, T): -1 is not scored
    for r, (inputs, tgt) in enumerate(rows):
        idx[r, : len(inputs)] = torch.tensor(inputs)
        targets[r, : len(tgt)] = torch.tensor(tgt)
    idx, targets = idx.to(device), targets.to(device)
    with forward_context():
        # forward, not __call__: a model compiled in place would recompile for every new shape; with targets the
        # model returns logits at every position (its mean loss is not used)
        logits, _ = model.forward(idx, targets)  # (R, T, vocab)
    logits = logits.float()
    token_logprobs = -F.cross_entropy(logits.flatten(0, 1), targets.flatten(), ignore_index=-1, reduction="none").view(
        targets.shape
    )  # (R, T), 0 where not scored
    scored = targets != -1
    sums = token_logprobs.double().sum(dim=1).tolist()
    counts = scored.sum(dim=1).tolist()
    greedy = ((logits.argmax(dim=-1) == targets) | ~scored).all(dim=1).tolist()
    return [RowScore(s, n, g) for s, n, g in zip(sums, counts, greedy)]
