"""FSDP on CPU: the preset's wrapping (one unit per Block, tied embeddings in the root unit), decay groups,
norm clipping over shards, and the update, against an unsharded model. Two gloo ranks under torchrun.

Lightning 2.6's FSDPStrategy itself needs a GPU ("requires a GPU accelerator"), so the worker wraps the module
with torch's FSDP the way the strategy does; the preset file is checked to parse into that strategy.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_fsdp_wrapping_matches_unsharded_model():
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
         str(ROOT / "tests" / "fsdp_worker.py")],
        env=env, capture_output=True, text=True, timeout=240,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    assert "rank 0: FSDP OK" in proc.stdout and "rank 1: FSDP OK" in proc.stdout


def test_strategy_fsdp_wraps_each_block():
    from gpt_lightning.cli.fit import fsdp_strategy
    from gpt_lightning.model import Block

    policy = fsdp_strategy().kwargs["auto_wrap_policy"]
    assert Block in policy._module_classes
