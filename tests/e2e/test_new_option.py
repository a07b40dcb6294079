"""Trying an idea touches one place: a field added to GPTConfig (model.py) and used in the model is a `--model.*`
option of fit, resume, validate and generate, with its --help line, without editing another file; both export
formats refuse a value they cannot represent, naming the option, and write nothing.

Done as a researcher would: a copy of the package with model.py edited, run through the real command line.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from helpers import REPO, make_data, run_cli_subprocess, write_tiny_config

FIELD = "    embed_scale: float = 1.0\n"
DOC = "        embed_scale: multiplies the token embeddings (an idea under test; 1 is GPT-2).\n"


def fork_with_new_option(root: Path) -> Path:
    """root/fork/gpt_lightning: the package with `embed_scale` added to GPTConfig and used in GPT.forward."""
    fork = root / "fork"
    shutil.copytree(REPO / "gpt_lightning", fork / "gpt_lightning", ignore=shutil.ignore_patterns("__pycache__"))
    model_py = fork / "gpt_lightning" / "model.py"
    text = model_py.read_text()
    docstring_end = text.index('    """\n', text.index("class GPTConfig"))
    text = text[:docstring_end] + DOC + text[docstring_end:]
    last_field = text.index("\n\n", text.index("    pad_vocab_multiple: int")) + 1
    text = text[:last_field] + FIELD + text[last_field:]
    assert text.count("self.transformer.wte(idx)") == 1
    text = text.replace("self.transformer.wte(idx)", "self.transformer.wte(idx) * self.config.embed_scale")
    model_py.write_text(text)
    return fork


@pytest.mark.slow  # seven subprocesses
def test_a_new_config_field_works_everywhere_and_export_refuses_it(tmp_path):
    fork = fork_with_new_option(tmp_path)
    make_data(tmp_path)
    write_tiny_config(tmp_path, **{"model.embed_scale": 2.0})
    env = {"PYTHONPATH": str(fork)}

    def run(*args: str):
        return run_cli_subprocess(list(args), cwd=tmp_path, env=env, timeout=600)

    help_text = run("fit", "--help").stdout
    assert "--model.embed_scale" in help_text and "multiplies the token embeddings" in help_text

    assert run("fit", "--config", "tiny.yaml", "--trainer.max_steps", "3").returncode == 0
    resumed = run("fit", "--config", "tiny.yaml", "--ckpt_path", "last")
    assert resumed.returncode == 0, resumed.stderr
    last = tmp_path / "out/ckpt/last.ckpt"
    import torch

    ckpt = torch.load(last, weights_only=True)
    assert ckpt["hyper_parameters"]["embed_scale"] == 2.0 and ckpt["global_step"] == 8
    assert run("validate", "--config", "tiny.yaml", "--ckpt_path", str(last)).returncode == 0
    generated = run("generate", "--ckpt_path", str(last), "--prompt", "ab", "--max_new_tokens", "5")
    assert generated.returncode == 0, generated.stderr

    for fmt in ("hf", "nanogpt"):
        out = tmp_path / f"export-{fmt}"
        refused = run("export", "--ckpt_path", str(last), "--format", fmt, "--out", str(out))
        assert refused.returncode == 2 and not out.exists()
        assert "--model.embed_scale=2.0" in refused.stderr and len(refused.stderr.strip().splitlines()) == 1
