"""Generation speed with and without the KV cache (a benchmark, not a test: it prints, it asserts nothing).

    python -m gpt_lightning.benchmarks.generation [--device cpu|cuda] [--threads N] [--only baby_char|gpt2_124m]

Two shapes, randomly initialised (speed does not depend on the weights): nanoGPT's baby char model
(6x384, block 256, vocab 65) generating 200 tokens, and GPT-2 124M (12x768, block 1024, vocab 50304)
generating 500, both from a 16-token prompt, so the sequence stays inside the window, where the cache
helps; past block_size every step recomputes the window either way (see GPT.generate_tokens). Sampling
is the CLI's default (temperature 0.8, top_k 200) with a fixed seed, so both runs produce the same tokens.
"""

from __future__ import annotations

import argparse
import platform
import time
from pathlib import Path
from typing import Optional

import torch

from gpt_lightning.model import GPT, GPTConfig

SHAPES = {
    "baby_char": (GPTConfig(vocab_size=65, block_size=256, n_layer=6, n_head=6, n_embd=384, bias=False), 200),
    "gpt2_124m": (GPTConfig(vocab_size=50304, block_size=1024, n_layer=12, n_head=12, n_embd=768, bias=True), 500),
}
PROMPT_TOKENS = 16


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def hardware(device: torch.device) -> str:
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)}, torch {torch.__version__}"
    return f"{cpu_name()}, {torch.get_num_threads()} torch thread(s), torch {torch.__version__}"


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_generation(model: GPT, idx: torch.Tensor, new_tokens: int, kv_cache: bool) -> tuple[float, torch.Tensor]:
    """Seconds to generate new_tokens after idx, and the tokens (to check both modes agree)."""
    device = idx.device
    generator = torch.Generator(device=device).manual_seed(1337)
    sync(device)
    start = time.perf_counter()
    out = model.generate(idx, new_tokens, temperature=0.8, top_k=200, kv_cache=kv_cache, generator=generator)
    sync(device)
    return time.perf_counter() - start, out


def bench(name: str, device: torch.device, new_tokens: Optional[int] = None) -> None:
    config, default_tokens = SHAPES[name]
    new_tokens = new_tokens or default_tokens
    torch.manual_seed(0)
    model = GPT(config).to(device).eval()
    idx = torch.randint(0, config.vocab_size, (1, PROMPT_TOKENS), device=device)
    for kv_cache in (True, False):  # warm up allocators and kernels
        time_generation(model, idx, 8, kv_cache)
    # cached, uncached, cached again: machine noise that drifts over the (long) uncached run hits both
    t_cache1, out_cache = time_generation(model, idx, new_tokens, kv_cache=True)
    t_plain, out_plain = time_generation(model, idx, new_tokens, kv_cache=False)
    t_cache2, _ = time_generation(model, idx, new_tokens, kv_cache=True)
    t_cache = min(t_cache1, t_cache2)
    same = torch.equal(out_cache, out_plain)
    print(
        f"{name:10s} {config.n_layer}x{config.n_embd} block {config.block_size}, {new_tokens} new tokens: "
        f"KV cache {new_tokens / t_cache:8.1f} tok/s, no cache {new_tokens / t_plain:8.1f} tok/s, "
        f"ratio {t_plain / t_cache:5.1f}x  (same tokens: {'yes' if same else 'no, float rounding flipped a draw'})",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--only", choices=sorted(SHAPES), default=None, help="run one shape only")
    parser.add_argument("--new_tokens", type=int, default=None, help="override the shapes' new-token counts")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    print(f"hardware: {hardware(device)}", flush=True)
    with torch.inference_mode():
        for name in [args.only] if args.only else SHAPES:
            bench(name, device, args.new_tokens)


if __name__ == "__main__":
    main()
