"""The throughput callback in a real fit, in this process: MFU is logged next to tokens/s when the peak FLOPs
of the device are known (here a CPU pretending to be a 1 GFLOP/s device)."""

import json

import pytest

from gpt_lightning.model import GPTConfig, flops_per_token
from gpt_lightning.train import throughput as throughput_callback
from helpers import REPO, TINY, TINY_OVER_PRESET
from helpers import tensorboard_scalars as scalars

CPU_PRESET = str(REPO / "configs" / "shakespeare_char_cpu.yaml")


def test_mfu_is_logged_when_the_peak_is_known(tmp_path, char_data, monkeypatch):
    from gpt_lightning.cli import main

    peak = 1e9  # pretend the CPU is a known 1 GFLOP/s device
    monkeypatch.setattr(throughput_callback, "peak_flops", lambda name, precision: peak if name == "cpu" else None)
    monkeypatch.chdir(tmp_path)
    main(
        [
            "fit",
            "--config",
            CPU_PRESET,
            f"--data.data_dir={char_data}",
            *TINY_OVER_PRESET,
            "--trainer.max_steps=8",
            "--trainer.log_every_n_steps=4",
            "--trainer.limit_val_batches=0",
            "--checkpoint.dirpath=out/tiny/checkpoints",
            "--trainer.logger.init_args.name=tiny",
            "--throughput.print_every_n_steps=0",
        ]
    )
    run_dir = tmp_path / "out" / "tiny" / "version_0"
    tokens_per_sec, mfu = scalars(run_dir, "perf/tokens_per_sec"), scalars(run_dir, "perf/mfu")
    assert [s for s, _ in mfu] == [s for s, _ in tokens_per_sec] == [4, 8]  # optimizer steps done
    vocab = json.loads((char_data / "meta.json").read_text())["vocab_size"]
    model = TINY["model"]
    config = GPTConfig(
        vocab_size=vocab, block_size=TINY["data"]["block_size"], bias=model["bias"],
        n_layer=model["n_layer"], n_head=model["n_head"], n_embd=model["n_embd"],
    )  # fmt: skip
    for (_, tps), (_, value) in zip(tokens_per_sec, mfu):
        assert value == pytest.approx(flops_per_token(config) * tps / peak, rel=1e-5)
