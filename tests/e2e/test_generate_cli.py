"""`python -m gpt_lightning generate` as a user runs it: text on stdout, the rest on stderr."""

import pytest

from gpt_lightning.cli.generate import SEPARATOR
from helpers import run_cli_subprocess

pytestmark = pytest.mark.slow


def test_generate_subprocess_end_to_end(char_ckpt):
    args = ["generate", "--ckpt_path", str(char_ckpt), "--prompt", "ROMEO:", "--max_new_tokens", "20"]
    proc = run_cli_subprocess([*args, "--temperature", "0", "--no_kv_cache"], env={"OMP_NUM_THREADS": "1"}, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("ROMEO:") and proc.stdout.endswith(f"\n{SEPARATOR}\n")
    assert "tokens/s" in proc.stderr and "KV cache off" in proc.stderr
