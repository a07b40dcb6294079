"""FSDP on CPU: the preset's wrapping (one unit per Block, tied embeddings in the root unit), decay groups,
norm clipping over shards, and the update, against an unsharded model. Two gloo ranks under torchrun.

Lightning 2.6's FSDPStrategy itself needs a GPU ("requires a GPU accelerator"), so the worker wraps the module
with torch's FSDP the way the strategy does; unit/test_fsdp_strategy.py checks the preset's strategy.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from helpers import TESTS, subprocess_env

pytestmark = pytest.mark.slow


# the modern block: RoPE (no wpe), RMSNorm, QK-norm, SwiGLU, an untied lm_head (in the root unit, as wte), soft cap
MODERN = dict(rope=True, norm="rmsnorm", qk_norm=True, mlp="swiglu", tie_embeddings=False, logit_softcap=30.0)


@pytest.mark.parametrize("options", [{}, MODERN], ids=["gpt2", "modern"])
def test_fsdp_wrapping_matches_unsharded_model(options):
    env = subprocess_env(OMP_NUM_THREADS="1")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc_per_node",
            "2",
            str(TESTS / "fsdp_worker.py"),
            json.dumps(options),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    assert "rank 0: FSDP OK" in proc.stdout and "rank 1: FSDP OK" in proc.stdout
