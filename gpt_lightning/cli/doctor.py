"""`python -m gpt_lightning doctor`: what to know about this machine before starting a long run.

    python -m gpt_lightning doctor [--out_dir out] [--data_dir data/openwebtext] [--check_compile true|false]

One line per fact: torch and CUDA, each GPU with its peak FLOPs entry (what MFU is computed against), bf16,
TF32, whether torch.compile works here, the distributed backends, Lightning against the tested range, free
disk where checkpoints go, and the data folder. A line that ends in `warning: ...` slows a run down or turns
something off; one that ends in `problem: ...` stops it, and makes the exit status 1.

Lightning is not imported (its version comes from the package metadata). The compile check runs in a process
of its own, alongside the other checks, and takes most of the time: it compiles a tiny function for real, not
from the cache. It runs by default only where a GPU is present (where `--model.compile auto` compiles); on a CPU
it is opt-in (--check_compile true). Measured on a 2-core CPU VM shared with other jobs: 2.5 s of CPU time without
the compile check, about 11 s with it (10 and 30-36 s wall at load 5-10).
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Optional

import torch

from gpt_lightning import hardware
from gpt_lightning.errors import UserError

# Runs in a fresh interpreter: a compiler that hangs or crashes cannot take the doctor down, and its time is
# spent while the other checks run. A shape never compiled before makes the compiler run for real instead of
# loading a kernel cached by an earlier run (the cache itself stays on: a cold cache is much slower and is
# not what `fit` sees).
COMPILE_PROBE = r"""
import json, random, sys, time
t0 = time.perf_counter()
try:
    import torch

    def f(x):
        return torch.nn.functional.gelu(x) * 2.0 + 1.0

    x = torch.randn(random.randint(1000, 100000), device=sys.argv[1])
    y = torch.compile(f)(x)
    ok = bool(torch.allclose(y, f(x), atol=1e-5))
    result = {"ok": ok, "error": None if ok else "the compiled function's result differs from eager mode"}
except Exception as err:
    lines = str(err).strip().splitlines()
    result = {"ok": False, "error": (type(err).__name__ + ": " + (lines[0] if lines else ""))[:300]}
result["seconds"] = time.perf_counter() - t0
print("COMPILE_PROBE " + json.dumps(result), flush=True)
"""

LOW_DISK_GIB = 10  # a GPT-2 124M checkpoint with its AdamW state is ~1.5 GB; best + last + temporaries


class Report:
    """The lines printed, and the warnings and problems among them."""

    def __init__(self) -> None:
        self.warnings: list[str] = []
        self.problems: list[str] = []

    def line(self, name: str, text: str, warning: Optional[str] = None, problem: Optional[str] = None) -> None:
        if warning:
            self.warnings.append(f"{name}: {warning}")
            text += f"   warning: {warning}"
        if problem:
            self.problems.append(f"{name}: {problem}")
            text += f"   problem: {problem}"
        print(f"{name:<12} {text}", flush=True)


def start_compile_probe(device: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", COMPILE_PROBE, device], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def compile_result(probe: subprocess.Popen, timeout: float) -> tuple[bool, str]:
    """(works, what to print) from the probe process."""
    try:
        out, err = probe.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        probe.kill()
        probe.communicate()
        return False, f"did not finish within {timeout:g} s (raise --compile_timeout to wait longer)"
    for line in out.splitlines():
        if line.startswith("COMPILE_PROBE "):
            result = json.loads(line[len("COMPILE_PROBE ") :])
            if result["ok"]:
                return True, f"a first compile took {result['seconds']:.1f} s"
            return False, result["error"]
    last = (err.strip().splitlines() or [f"exit status {probe.returncode}"])[-1]
    return False, f"the compile process died: {last[:300]}"


def pinned(requirement_name: str) -> Optional[str]:
    """The version range gpt_lightning's install_requires gives a package ('>=2.6,<2.7'), or None."""
    from packaging.requirements import Requirement

    try:
        requires = importlib.metadata.requires("gpt_lightning") or []
    except importlib.metadata.PackageNotFoundError:
        return None
    for text in requires:
        req = Requirement(text)
        if req.name.lower() == requirement_name and req.marker is None:
            return str(req.specifier) or None
    return None


def version_against_pin(name: str, version: str) -> tuple[str, Optional[str]]:
    """'2.6.6, tested range >=2.6,<2.7' and a warning when the version is outside it."""
    from packaging.specifiers import SpecifierSet

    spec = pinned(name)
    if spec is None:
        return f"{version} (tested range unknown: gpt_lightning is not installed; `pip install -e .`)", None
    if SpecifierSet(spec).contains(version, prereleases=True):
        return f"{version}, tested range {spec}: ok", None
    warning = f"{name} {version} is outside the tested range {spec}; pip install '{name}{spec}'"
    return f"{version}, tested range {spec}", warning


def peak_flops_text(name: str) -> tuple[str, Optional[str]]:
    """The PEAK_FLOPS entry a GPU name maps to, or why MFU will not be reported."""
    key = hardware.peak_flops_key(name)
    if key is None:
        return "unknown: MFU off", "this GPU is not in hardware.PEAK_FLOPS, so MFU is not reported; add its datasheet"
    entry = ", ".join(f"{p} {v / 1e12:g}" for p, v in hardware.PEAK_FLOPS[key].items())
    return f"table entry {key!r}: {entry} TFLOP/s", None


def free_disk(out_dir: Path) -> tuple[str, Optional[str], Optional[str]]:
    """Free space on the file system out_dir is (or will be) on; (text, warning, problem)."""
    if out_dir.exists() and not out_dir.is_dir():
        return f"{out_dir} is a file", None, f"{out_dir} is a file, not a folder; choose another output folder"
    existing = out_dir.resolve()
    while not existing.exists():
        existing = existing.parent
    free = shutil.disk_usage(existing).free / 2**30
    where = str(out_dir) + ("" if existing == out_dir.resolve() else f" (not there yet; on {existing}'s disk)")
    text = f"{free:,.1f} GiB free for {where}"
    if not os.access(existing, os.W_OK):
        return text, None, f"{existing} is not writable; choose another output folder (--out_dir here)"
    if free < LOW_DISK_GIB:
        return text, f"less than {LOW_DISK_GIB} GiB free: checkpoints of large models may not fit", None
    return text, None, None


def data_state(data_dir: Path) -> tuple[str, Optional[str]]:
    """What a data folder holds, checked as `fit` checks it; (text, problem)."""
    from gpt_lightning.data.bins import (
        SPLITS,
        check_meta_fields,
        check_token_ids,
        describe_missing,
        made_from,
        open_split,
        read_meta,
    )
    from gpt_lightning.data.nanogpt import is_nanogpt_data_folder, nanogpt_data_meta

    try:
        meta = read_meta(data_dir)
        if meta is None and is_nanogpt_data_folder(data_dir):
            meta = nanogpt_data_meta(data_dir)  # as `fit` reads it (a looping or malicious meta.pkl is refused)
        if meta is None and data_dir.exists() and not data_dir.is_dir():
            return f"{data_dir} is a file", "give --data_dir the folder `prepare` wrote (meta.json, train.bin, val.bin)"
        if meta is None:
            fix = f"run `python -m gpt_lightning prepare --out {data_dir} ...` first"
            return f"{data_dir} {describe_missing(data_dir)}", fix
        check_meta_fields(data_dir, meta)
        counts = []
        for split in SPLITS:
            tokens = open_split(data_dir, split, meta)
            check_token_ids(data_dir, meta, split, tokens)
            counts.append(f"{len(tokens):,} {split}")
    except UserError as e:
        return f"{data_dir}", str(e)
    corpus, tokenizer = (name or "?" for name in made_from(meta))
    vocab = meta["vocab_size"]
    return f"{data_dir}: {corpus}, {tokenizer} vocab {vocab}, {' + '.join(counts)} tokens ({meta['dtype']}): ok", None


def doctor(
    out_dir: Path = Path("out"),
    data_dir: Optional[Path] = None,
    check_compile: Optional[bool] = None,
    compile_timeout: float = 120.0,
) -> int:
    """Check this machine before a long run; prints one line per fact and returns the number of problems.

    Args:
        out_dir: where runs will write checkpoints and logs (free disk is reported for it).
        data_dir: a prepared data folder to check as `fit` would (meta.json, bins, token ids).
        check_compile: compile a tiny function with torch.compile to see whether the compiler works here (tens
            of seconds on a CPU). None: only where a GPU is present, the only place `--model.compile auto` compiles.
        compile_timeout: seconds to wait for that compile.
    """
    t0 = time.perf_counter()
    cuda = torch.cuda.is_available()
    if check_compile is None:
        check_compile = cuda
    probe = start_compile_probe("cuda" if cuda else "cpu") if check_compile else None
    report = Report()
    report.line("python", sys.version.split()[0])
    report.line("torch", version_against_pin("torch", torch.__version__.split("+")[0])[0] + f" ({torch.__version__})")

    if not cuda:
        why = (
            "this torch is a CPU-only build"
            if torch.version.cuda is None
            else (
                f"torch is built for CUDA {torch.version.cuda} but sees no GPU (driver, CUDA_VISIBLE_DEVICES="
                f"{os.environ.get('CUDA_VISIBLE_DEVICES', 'unset')})"
            )
        )
        report.line("CUDA", f"not available: {why}")
        report.line("GPU", "none: MFU off; fit trains on the CPU in 32-true (mixed precision is ~10x slower there)")
        report.line("bf16", "no GPU")
        report.line("TF32", "no GPU")
    else:
        report.line("CUDA", f"{torch.version.cuda}, {torch.cuda.device_count()} GPU(s)")
        names = []
        for i in range(torch.cuda.device_count()):
            props = torch.cuda.get_device_properties(i)
            names.append(props.name)
            report.line(
                f"GPU {i}",
                f"{props.name}, {props.total_memory / 2**30:.0f} GiB, compute capability {props.major}.{props.minor}",
            )
        for name in dict.fromkeys(names):  # each kind of GPU once
            text, warning = peak_flops_text(name)
            report.line("peak FLOPs", text, warning=warning)
        if len(set(names)) > 1:
            report.line("GPUs", "differ", warning="mixed GPUs: DDP runs at the pace of the slowest")
        major = torch.cuda.get_device_capability(0)[0]
        bf16 = major >= 8  # what fit checks (hardware.check_precision): native bf16, not torch's emulation
        report.line(
            "bf16",
            "supported: an unset --trainer.precision gives bf16-mixed" if bf16 else "not supported",
            warning=None if bf16 else "fit stops on bf16 here: pass --trainer.precision=16-mixed (or 32-true)",
        )
        report.line(
            "TF32",
            "supported: fit runs fp32 matmuls on TF32 tensor cores (float32_matmul_precision 'high')"
            if major >= 8
            else f"not on compute capability {major}.x (needs 8.0, Ampere): fp32 matmuls stay fp32",
        )

    if probe is None:
        why = "no GPU: --model.compile auto does not compile here" if not cuda else "--check_compile false"
        report.line("compile", f"not checked ({why}; --check_compile true checks it)")
    else:
        works, text = compile_result(probe, compile_timeout)
        where = "cuda" if cuda else "cpu"
        if works:
            report.line("compile", f"works (inductor on {where}): {text}")
        else:
            report.line(
                "compile",
                f"fails on {where}: {text}",
                warning="fit with compile on falls back to eager mode (slower); --model.compile=false skips it",
            )

    dist = torch.distributed
    if not dist.is_available():
        report.line("distributed", "torch.distributed is not built in", warning="no DDP or FSDP with this torch")
    else:
        nccl, gloo = dist.is_nccl_available(), dist.is_gloo_available()
        nccl_text = "yes" if nccl else "no"
        if nccl:
            try:
                nccl_text += " " + ".".join(map(str, torch.cuda.nccl.version()))
            except Exception:  # the version is a nicety; its absence changes nothing
                pass
        report.line(
            "distributed",
            f"nccl {nccl_text}, gloo {'yes' if gloo else 'no'}",
            warning="no NCCL: multi-GPU DDP/FSDP cannot run (CPU DDP uses gloo)" if cuda and not nccl else None,
        )

    try:
        text, warning = version_against_pin("lightning", importlib.metadata.version("lightning"))
        report.line("lightning", text, warning=warning)
    except importlib.metadata.PackageNotFoundError:
        report.line("lightning", "not installed", problem="pip install -e . installs it")

    text, warning, problem = free_disk(Path(out_dir))
    report.line("disk", text, warning=warning, problem=problem)
    if data_dir is not None:
        text, problem = data_state(Path(data_dir))
        report.line("data", text, problem=problem)

    print(
        f"doctor: {len(report.problems)} problem(s), {len(report.warnings)} warning(s) "
        f"(took {time.perf_counter() - t0:.1f} s)"
    )
    return len(report.problems)


def main(args: list[str]) -> None:
    from jsonargparse import CLI

    problems = CLI(doctor, args=args, prog="python -m gpt_lightning doctor", exit_on_error=False)
    if problems:
        raise SystemExit(1)
