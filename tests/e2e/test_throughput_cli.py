"""Throughput through `python -m gpt_lightning`: fit prints and logs tokens/s and says MFU is unknown on a CPU;
a smoke run of `bench` prints its ratios (nothing here is timed)."""

import re

import pytest

from helpers import REPO, TINY, TINY_OVER_PRESET, run_cli_subprocess
from helpers import tensorboard_scalars as scalars

pytestmark = pytest.mark.slow

CPU_PRESET = str(REPO / "configs" / "shakespeare_char_cpu.yaml")


def test_fit_logs_tokens_per_sec_and_says_mfu_is_unknown_on_cpu(tmp_path, char_data):
    result = run_cli_subprocess(
        [
            "fit",
            "--config",
            CPU_PRESET,
            f"--data.data_dir={char_data}",
            *TINY_OVER_PRESET,
            "--trainer.max_steps=20",
            "--trainer.accumulate_grad_batches=2",
            "--trainer.log_every_n_steps=5",
            "--val_every_n_steps=10",
            "--checkpoint.dirpath=out/tiny/checkpoints",
            "--trainer.logger.init_args.name=tiny",
            "--sample.max_new_tokens=0",
            "--throughput.print_every_n_steps=10",
        ],
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    output = result.stdout + result.stderr
    assert (
        f"tokens per optimizer step: {TINY['data']['batch_size']} batch x {TINY['data']['block_size']} block"
        " x 1 device(s) x 1 node(s) x 2 accumulation"
    ) in output
    assert "MFU: unknown, no peak FLOPs for 'cpu'" in output
    assert re.search(r"step 10: [\d,]+ tokens/s, MFU unknown", output)
    assert re.search(r"step 20: [\d,]+ tokens/s, MFU unknown", output)
    run_dir = tmp_path / "out" / "tiny" / "version_0"
    tokens_per_sec = scalars(run_dir, "perf/tokens_per_sec")
    # one point per window of 5 optimizer steps, at the optimizer steps done, as train/loss
    assert [step for step, _ in tokens_per_sec] == [5, 10, 15, 20]
    assert all(value > 0 for _, value in tokens_per_sec)
    assert [step for step, _ in scalars(run_dir, "train/loss")] == [5, 10, 15, 20]
    assert scalars(run_dir, "perf/mfu") == []  # never a made-up number


def test_bench_smoke_run_prints_the_ratio_and_writes_nothing_to_out(tmp_path, char_data):
    result = run_cli_subprocess(
        [
            "bench",
            "--config",
            CPU_PRESET,
            f"--data.data_dir={char_data}",
            *TINY_OVER_PRESET,
            "--steps=3",
            "--warmup=1",
            "--rounds=2",
            "--data_batches=5",
        ],
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout
    assert re.search(r"^median\s+[\d,]+\s+[\d,]+\s+\d+\.\d{3}", out, flags=re.MULTILINE), out
    assert re.search(r"^2\s+[\d,]+\s+[\d,]+\s+\d+\.\d{3}", out, flags=re.MULTILINE), out
    assert "MFU: unknown" in out
    assert re.search(r"data pipeline alone: [\d,]+ batches/s .* \d+\.\dx what \(a\) consumes", out), out
    assert re.search(r"peak RSS, each path in a fresh process: \(a\) fit [\d,]+ MB, \(b\) plain loop [\d,]+ MB", out), (
        out
    )
    assert not (tmp_path / "out").exists()  # checkpoints and logs went to a temporary folder
