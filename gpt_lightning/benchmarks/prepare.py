"""Benchmark of `prepare` on a generated corpus: tokens per second and peak memory, by --num_proc.

    python -m gpt_lightning.benchmarks.prepare [--gigabytes 1.0] [--num_proc 1 2] [--small_gigabytes 0.1]

It writes a corpus of many .txt files (slices of tinyshakespeare, rotated, when data/tinyshakespeare.txt is
there, else random words) to a temporary folder, then runs `prepare --tokenizer gpt2` on it once per
--num_proc, each in a fresh process, and reports wall time, tokens/s and peak resident memory of the main
process and of the largest worker. A run on a corpus --small_gigabytes large shows that memory does not grow
with the corpus. Numbers depend on the machine and on what else runs on it: compare ratios, not absolutes.
"""

from __future__ import annotations

import json
import math
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Optional

import numpy as np

FILE_BYTES = 1 << 20  # 1 MiB per document
TEXT_KIND = ["random words"]  # what base_text found


def base_text() -> str:
    repo = Path(__file__).resolve().parents[2]
    candidates = [Path("data"), repo / "data", repo.parent / "shared" / "data", repo.parent.parent / "shared" / "data"]
    for folder in candidates:
        if (folder / "tinyshakespeare.txt").is_file():
            TEXT_KIND[0] = "tinyshakespeare slices"
            return (folder / "tinyshakespeare.txt").read_text()
    rng = np.random.default_rng(0)
    words = "the of and to in a is that for it as was with be by on not he I this are or his from".split()
    lines = [" ".join(rng.choice(words, size=rng.integers(4, 14))) for _ in range(40_000)]
    return "\n".join(lines) + "\n"


def make_corpus(folder: Path, gigabytes: float, seed: int = 0) -> int:
    """Files of FILE_BYTES characters, each the base text rotated to a random offset (so documents differ)."""
    folder.mkdir(parents=True, exist_ok=True)
    base = base_text()
    doubled = base * (FILE_BYTES // len(base) + 2)
    rng = np.random.default_rng(seed)
    n_files = max(1, math.ceil(gigabytes * 1e9 / FILE_BYTES))  # at least `gigabytes` of text
    for i in range(n_files):
        start = int(rng.integers(0, len(base)))
        (folder / f"{i // 100:03d}").mkdir(exist_ok=True)
        (folder / f"{i // 100:03d}" / f"doc{i:05d}.txt").write_text(doubled[start : start + FILE_BYTES])
    return n_files


def run_child(source: str, out: str, num_proc: int) -> None:
    """In a fresh process: prepare, then print its time and peak memory (self and largest worker) as JSON."""
    from gpt_lightning.data.bins import SPLITS, split_tokens
    from gpt_lightning.data.prepare import prepare

    t0 = time.perf_counter()
    meta = prepare(source, "gpt2", Path(out), val_fraction=0.001, overwrite=True, num_proc=num_proc)
    seconds = time.perf_counter() - t0
    kib = 1024 if sys.platform != "darwin" else 1  # ru_maxrss is KiB on Linux, bytes on macOS
    print(
        json.dumps(
            {
                "seconds": seconds,
                "tokens": sum(split_tokens(meta, split) for split in SPLITS),
                "main_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * kib / 1e6,
                "worker_rss_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * kib / 1e6,
            }
        )
    )


def measure(source: Path, out: Path, num_proc: int) -> dict:
    cmd = [sys.executable, "-m", "gpt_lightning.benchmarks.prepare", "--child", str(source), str(out), str(num_proc)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=dict(os.environ, TQDM_DISABLE="1"))
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr[-2000:])
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    shutil.rmtree(out, ignore_errors=True)
    return result


def main(gigabytes: float = 1.0, num_proc: tuple[int, ...] = (1, 2), small_gigabytes: Optional[float] = 0.1) -> None:
    with tempfile.TemporaryDirectory(prefix="prepare_bench_") as tmp:
        tmp = Path(tmp)
        rows = []
        sizes = [(small_gigabytes, (1,))] if small_gigabytes else []
        sizes.append((gigabytes, num_proc))
        for size, procs in sizes:
            corpus = tmp / f"corpus_{size}"
            t0 = time.perf_counter()
            n = make_corpus(corpus, size)
            print(
                f"corpus: {n} files, {n * FILE_BYTES / 1e9:.2f} GB of {TEXT_KIND[0]}, written in "
                f"{time.perf_counter() - t0:.0f} s",
                flush=True,
            )
            for p in procs:
                r = measure(corpus, tmp / "out", p)
                r.update(gigabytes=n * FILE_BYTES / 1e9, num_proc=p)
                rows.append(r)
                print(
                    f"  num_proc {p}: {r['tokens']:,} tokens in {r['seconds']:.0f} s = "
                    f"{r['tokens'] / r['seconds']:,.0f} "
                    f"tokens/s; peak RSS main {r['main_rss_mb']:.0f} MB, largest worker {r['worker_rss_mb']:.0f} MB",
                    flush=True,
                )
            shutil.rmtree(corpus)
    print("\n| corpus | num_proc | tokens | seconds | tokens/s | peak RSS main | peak RSS largest worker |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        worker = f"{r['worker_rss_mb']:.0f} MB" if r["num_proc"] > 1 else "-"
        print(
            f"| {r['gigabytes']:.2f} GB | {r['num_proc']} | {r['tokens']:,} | {r['seconds']:.0f} | "
            f"{r['tokens'] / r['seconds']:,.0f} | {r['main_rss_mb']:.0f} MB | {worker} |"
        )
    base = [r for r in rows if r["gigabytes"] == rows[-1]["gigabytes"]]
    if len(base) > 1:
        print(
            f"\nspeed-up num_proc {base[-1]['num_proc']} vs {base[0]['num_proc']}: "
            f"{base[0]['seconds'] / base[-1]['seconds']:.2f}x"
        )


if __name__ == "__main__":
    if sys.argv[1:2] == ["--child"]:
        run_child(sys.argv[2], sys.argv[3], int(sys.argv[4]))
    else:
        from jsonargparse import CLI

        CLI(main, as_positional=False)
