"""`python -m gpt_lightning bench`: the training loop through Lightning against a plain PyTorch loop, side by
side (the work is benchmarks/training.py's)."""

from __future__ import annotations


def main(args: list[str]) -> None:
    from gpt_lightning.benchmarks.training import main as bench_main

    bench_main(args)
