"""Benchmarks: `python -m gpt_lightning.benchmarks.NAME` (they print measurements, they are not tests)."""
