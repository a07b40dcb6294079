"""A nanoGPT user's folder through the real command line: fit on nanoGPT's data folders as they are, continue a
nanoGPT run (and resume that with --ckpt_path), export back to ckpt.pt, and a crafted meta.pkl refused everywhere."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from nanogpt_helpers import (
    CHARS,
    SCHEDULE,
    crafted_meta_pkl,
    write_nanogpt_data,
    write_nanogpt_run,
)

from helpers import TINY_OVER_PRESET, run_cli_subprocess

pytestmark = pytest.mark.slow

# TINY_OVER_PRESET without the architecture (init_from brings it) and with nanoGPT's schedule of the fixture
RUN_ARGS = [a for a in TINY_OVER_PRESET if not a.startswith(("--model.n_", "--model.bias", "--model.warmup"))]
SCHEDULE_ARGS = [
    f"--model.learning_rate={SCHEDULE['learning_rate']}",
    f"--model.min_lr={SCHEDULE['min_lr']}",
    f"--model.warmup_steps={SCHEDULE['warmup_iters']}",
    f"--model.lr_decay_steps={SCHEDULE['lr_decay_iters']}",
    f"--model.beta2={SCHEDULE['beta2']}",
]


def snapshot(folder: Path) -> dict:
    return {p.name: (p.stat().st_size, p.stat().st_mtime_ns) for p in folder.iterdir()}


@pytest.mark.parametrize("vocab", ["char", "gpt2"])
def test_fit_trains_on_a_nanogpt_data_folder_as_it_is(tmp_path, vocab):
    name = "shakespeare_char" if vocab == "char" else "openwebtext"
    data = write_nanogpt_data(tmp_path / "nanoGPT" / "data" / name, vocab)
    before = snapshot(data)
    result = run_cli_subprocess(
        [
            "fit",
            f"--data.data_dir={data}",
            "--data.source=tinyshakespeare",
            *TINY_OVER_PRESET,
            "--trainer.max_steps=2",
            "--checkpoint.dirpath=out/ckpt",
            "--trainer.logger=false",
        ],
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "as a nanoGPT data folder" in result.stderr
    assert snapshot(data) == before  # no meta.json (nor anything else) written into the user's folder
    hp = torch.load(tmp_path / "out" / "ckpt" / "last.ckpt", weights_only=True)["hyper_parameters"]
    if vocab == "char":
        assert hp["vocab_size"] == len(CHARS) and hp["tokenizer"] == {"kind": "char", "chars": "".join(CHARS)}
    else:
        assert hp["vocab_size"] == 50257 and hp["tokenizer"]["kind"] == "gpt2"


def test_continue_a_nanogpt_run_then_resume_it_and_export_it_back(tmp_path):
    data = write_nanogpt_data(tmp_path / "data" / "shakespeare_char", "char")
    ckpt, _, _ = write_nanogpt_run(tmp_path / "out-shakespeare-char", "char", True, True, iter_num=30)
    common = [
        f"--data.data_dir={data}",
        *RUN_ARGS,
        *SCHEDULE_ARGS,
        "--checkpoint.dirpath=out/ckpt",
        "--trainer.logger=false",
        f"--model.init_from={ckpt}",
        "--model.init_optimizer_state=true",
    ]
    result = run_cli_subprocess(["fit", *common, "--trainer.max_steps=32"], cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Continuing the nanoGPT run at step 30" in result.stderr
    assert "does not continue nanoGPT's exactly" not in result.stderr  # the schedule options match the run's
    last = tmp_path / "out" / "ckpt" / "last.ckpt"
    assert torch.load(last, weights_only=True)["global_step"] == 32
    # a later resume of the continued run is an ordinary --ckpt_path resume (the same command line, plus the path)
    result = run_cli_subprocess(["fit", *common, "--trainer.max_steps=34", "--ckpt_path=last"], cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Continuing the nanoGPT run" not in result.stderr
    assert torch.load(last, weights_only=True)["global_step"] == 34
    # and back to nanoGPT: ckpt.pt + meta.pkl that its sample.py and train.py --init_from=resume load
    result = run_cli_subprocess(
        ["export", f"--ckpt_path={last}", "--out=out-back", "--format=nanogpt", "--dataset=shakespeare_char"],
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    back = torch.load(tmp_path / "out-back" / "ckpt.pt", weights_only=True)
    assert back["iter_num"] == 34 and back["config"]["dataset"] == "shakespeare_char"
    assert (tmp_path / "out-back" / "meta.pkl").is_file()
    # generate reads it as sample.py would, from the folder nanoGPT ran in (data/shakespeare_char/meta.pkl)
    result = run_cli_subprocess(
        ["generate", "--ckpt_path=out-back/ckpt.pt", "--prompt=All:", "--max_new_tokens=20", "--temperature=0"],
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.startswith("All:") and len(result.stdout.split("\n---")[0]) == len("All:") + 20


def test_a_crafted_meta_pkl_runs_no_code_through_the_command_line(tmp_path):
    marker = tmp_path / "pwned"
    data = write_nanogpt_data(tmp_path / "data" / "shakespeare_char", "char")
    crafted_meta_pkl(data, marker)
    clean = write_nanogpt_data(tmp_path / "clean", "char")
    ckpt, _, _ = write_nanogpt_run(tmp_path / "out", "char", False, False)
    commands = [
        ["fit", f"--data.data_dir={data}", *TINY_OVER_PRESET, "--trainer.max_steps=1", "--trainer.logger=false"],
        # the data is clean; the checkpoint's meta.pkl is looked for as sample.py does, and refused
        [
            "fit",
            f"--data.data_dir={clean}",
            *RUN_ARGS,
            f"--model.init_from={ckpt}",
            "--trainer.max_steps=1",
            "--trainer.logger=false",
        ],
        ["generate", f"--ckpt_path={ckpt}", "--max_new_tokens=2"],
        ["generate", f"--ckpt_path={ckpt}", f"--meta={data}", "--max_new_tokens=2"],
        ["export", f"--ckpt_path={ckpt}", "--out=exported", "--format=nanogpt"],
    ]
    for command in commands:
        result = run_cli_subprocess(command, cwd=tmp_path)
        assert result.returncode == 2, (command, result.stderr[-2000:])
        last_line = result.stderr.strip().splitlines()[-1]
        assert last_line.startswith("error: ") and "meta.pkl is not a plain nanoGPT meta.pkl" in last_line, command
    assert not marker.exists()
