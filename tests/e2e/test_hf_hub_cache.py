"""A hub name (`--model.init_from=gpt2`) in a fresh offline process: read from the Hugging Face cache when a
copy is there (logits equal transformers'), one clear error saying how to pass a folder when not."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from helpers import hf_logits, random_hf_model, subprocess_env

pytestmark = pytest.mark.slow
pytest.importorskip("transformers")  # the hf extra (part of dev)


def test_hub_name_offline_without_cache_says_how_to_pass_a_folder(tmp_path):
    env = subprocess_env(HF_HUB_OFFLINE="1", HF_HOME=str(tmp_path / "hf_home"))
    code = (
        "from gpt_lightning.errors import reported_user_errors\n"
        "from gpt_lightning.weights.hf import load_pretrained\n"
        "with reported_user_errors():\n    load_pretrained('gpt2')\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith("error: ") and "--model.init_from=./gpt2" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_hub_name_loads_from_the_hub_cache_offline(tmp_path):
    """`--model.init_from=gpt2` reads the Hugging Face hub cache: a cached copy (here a random stand-in laid out
    as the hub cache lays out openai-community/gpt2) loads with no network, logits equal transformers'."""
    hf = random_hf_model(n_layer=2, n_embd=32, n_head=4)
    snapshot = tmp_path / "hf_home" / "hub" / "models--openai-community--gpt2" / "snapshots" / ("0" * 40)
    hf.save_pretrained(snapshot)
    (snapshot.parents[1] / "refs").mkdir()
    (snapshot.parents[1] / "refs" / "main").write_text("0" * 40)
    idx = torch.randint(0, 97, (2, 8))
    torch.save(idx, tmp_path / "idx.pt")
    env = subprocess_env(HF_HUB_OFFLINE="1", HF_HOME=str(tmp_path / "hf_home"))
    code = (
        "import torch\n"
        "from gpt_lightning.weights.state_dict import build_model\n"
        "from gpt_lightning.weights.hf import load_pretrained\n"
        "config, sd, meta = load_pretrained('gpt2')\n"
        "model = build_model(config, sd).eval()\n"
        f"idx = torch.load({str(tmp_path / 'idx.pt')!r})\n"
        f"torch.save(model(idx, idx)[0].detach(), {str(tmp_path / 'logits.pt')!r})\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    torch.testing.assert_close(torch.load(tmp_path / "logits.pt"), hf_logits(hf, idx), atol=1e-5, rtol=0)
