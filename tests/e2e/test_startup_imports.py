"""`prepare`, `generate`, `export` and `evaluate` start without Lightning (importing it costs seconds): each command
runs for real in one fresh interpreter, which then reports whether any `lightning` module was loaded."""

from __future__ import annotations

import subprocess
import sys

import pytest
from hellaswag_helpers import write_examples

from helpers import REPO, subprocess_env

pytestmark = pytest.mark.slow  # four commands in a fresh interpreter: ~20 s on 2 cores

SCRIPT = """
import sys
from gpt_lightning.cli import main
def run(args):
    try:
        main(args)
    except SystemExit as e:  # a UserError is one line and exit 2: the command still ran its own code path
        print("exit", args[0], e.code, file=sys.stderr)
ckpt, text, out, examples = sys.argv[1:5]
run(["prepare", "--source", text, "--out", out + "/data"])
run(["generate", "--ckpt_path", ckpt, "--max_new_tokens", "5", "--device", "cpu"])
run(["export", "--ckpt_path", ckpt, "--out", out + "/hf"])
run(["evaluate", "--ckpt_path", ckpt, "--hellaswag_path", examples, "--limit", "2", "--progress", "false"])
roots = {m.split(".")[0] for m in sys.modules}
print("LIGHTNING", sorted(roots & {"lightning", "pytorch_lightning"}))
"""


def test_commands_other_than_fit_do_not_import_lightning(char_ckpt, tiny_text_file, tmp_path):
    examples = write_examples(tmp_path / "hellaswag.jsonl")
    args = [str(char_ckpt), str(tiny_text_file), str(tmp_path), str(examples)]
    command = [sys.executable, "-c", SCRIPT, *args]
    result = subprocess.run(command, cwd=REPO, env=subprocess_env(), capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert (tmp_path / "data" / "meta.json").is_file() and (tmp_path / "hf").is_dir(), result.stderr[-3000:]
    assert "LIGHTNING []" in result.stdout, result.stdout[-2000:]
