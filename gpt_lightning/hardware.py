"""What the hardware can do: peak FLOPs per device, the number format matmuls run in, TF32, precision.

Nothing here imports Lightning. Nothing here touches CUDA at import time.
"""

from __future__ import annotations

import re
from typing import Optional

import torch

# Dense (no sparsity) peak tensor FLOP/s per device, from the vendors' datasheets, keyed by the precision the
# matmuls run in: "fp32" (plain), "tf32" (fp32 tensors on tensor cores), "bf16", "fp16" (with fp32
# accumulation, which is what autocast does). A missing key means the device has no fast path for it.
# Lightning has a similar table (lightning.fabric.utilities.throughput), but it lists H200 and H100 NVL with
# sparsity (2x too high) and misses plain "NVIDIA H200", so we keep our own.
PEAK_FLOPS: dict[str, dict[str, float]] = {
    "H200 NVL": {"fp32": 60e12, "tf32": 418e12, "bf16": 835e12, "fp16": 835e12},
    "H200": {"fp32": 67e12, "tf32": 495e12, "bf16": 989e12, "fp16": 989e12},  # SXM
    "H100 NVL": {"fp32": 60e12, "tf32": 418e12, "bf16": 835e12, "fp16": 835e12},
    "H100 PCIe": {"fp32": 51e12, "tf32": 378e12, "bf16": 756e12, "fp16": 756e12},
    "H100": {"fp32": 67e12, "tf32": 495e12, "bf16": 989e12, "fp16": 989e12},  # SXM ("H100 80GB HBM3")
    "A100": {"fp32": 19.5e12, "tf32": 156e12, "bf16": 312e12, "fp16": 312e12},
    "L40S": {"fp32": 91.6e12, "tf32": 183e12, "bf16": 362e12, "fp16": 362e12},
    "L4": {"fp32": 30.3e12, "tf32": 60e12, "bf16": 121e12, "fp16": 121e12},
    "A10G": {"fp32": 31.2e12, "tf32": 62.5e12, "bf16": 125e12, "fp16": 125e12},  # as the A10 datasheet
    "A10": {"fp32": 31.2e12, "tf32": 62.5e12, "bf16": 125e12, "fp16": 125e12},
    "RTX 4090": {"fp32": 82.6e12, "tf32": 82.6e12, "bf16": 165.2e12, "fp16": 165.2e12},
    "RTX 3090": {"fp32": 35.6e12, "tf32": 35.6e12, "bf16": 71e12, "fp16": 71e12},
    "V100 PCIe": {"fp32": 14e12, "fp16": 112e12},
    "V100": {"fp32": 15.7e12, "fp16": 125e12},  # SXM2
    "T4": {"fp32": 8.1e12, "fp16": 65e12},
}

# How torch.cuda.get_device_name spells them ("NVIDIA H100 80GB HBM3", "NVIDIA A100-SXM4-40GB",
# "Tesla V100-PCIE-16GB", "NVIDIA GeForce RTX 4090"): first match wins, so variants come before the plain
# name, and word boundaries keep "A10" from matching "A100" and "L4" from matching "L40S".
_NAME_PATTERNS: list[tuple[str, str]] = [
    (r"\bH200\b.*\bNVL\b", "H200 NVL"),
    (r"\bH200\b", "H200"),
    (r"\bH100\b.*\bNVL\b", "H100 NVL"),
    (r"\bH100\b.*\bPCIe\b", "H100 PCIe"),
    (r"\bH100\b", "H100"),
    (r"\bA100\b", "A100"),
    (r"\bL40S\b", "L40S"),
    (r"\bL4\b", "L4"),
    (r"\bA10G\b", "A10G"),
    (r"\bA10\b", "A10"),
    (r"\bRTX 4090\b(?! ?(Ti|D)\b)", "RTX 4090"),
    (r"\bRTX 3090\b(?! ?Ti\b)", "RTX 3090"),
    (r"\bV100S?\b.*\bPCIE\b", "V100 PCIe"),
    (r"\bV100\b", "V100"),
    (r"\bT4\b", "T4"),
]


def matmul_precision(precision: str, device: Optional[torch.device] = None) -> Optional[str]:
    """The number format the matmuls run in under a Trainer `precision` ("bf16-mixed" -> "bf16"); fp32 runs
    on TF32 tensor cores on Ampere and newer GPUs when the float32 matmul precision allows it. None for
    formats the table does not cover (64-bit, transformer-engine, ...)."""
    p = str(precision)
    if p.startswith("bf16"):
        return "bf16"
    if p.startswith("16"):
        return "fp16"
    if p.startswith("32"):
        tf32 = (
            device is not None
            and device.type == "cuda"
            and torch.cuda.get_device_capability(device)[0] >= 8
            and torch.get_float32_matmul_precision() != "highest"
        )
        return "tf32" if tf32 else "fp32"
    return None


def peak_flops_key(device_name: str) -> Optional[str]:
    """The PEAK_FLOPS entry for a device name as torch.cuda.get_device_name gives it, or None."""
    for pattern, key in _NAME_PATTERNS:
        if re.search(pattern, device_name, flags=re.IGNORECASE):
            return key
    return None


def peak_flops(device_name: str, precision: Optional[str]) -> Optional[float]:
    """Peak FLOP/s of one device from its name (as torch.cuda.get_device_name gives it) and a matmul
    precision ("fp32", "tf32", "bf16", "fp16"); None when the device or the precision is not in the table."""
    key = peak_flops_key(device_name)
    return PEAK_FLOPS[key].get(precision) if key and precision else None


def device_name(device: torch.device) -> str:
    return torch.cuda.get_device_name(device) if device.type == "cuda" else device.type


def enable_tf32(device: torch.device) -> None:
    """Let fp32 matmuls on this CUDA device use TF32 tensor cores where it has them (Ampere and newer: about 8x
    their fp32 rate, with a 10-bit mantissa that training does not notice); mixed precision is unaffected.

    Only a flag (torch.set_float32_matmul_precision("high")), set without asking the GPU anything: on GPUs
    without TF32 it changes nothing, and not touching CUDA keeps this safe before a strategy forks processes.
    A per-process setting: the CLI sets it once the Trainer knows its device (before Lightning's tensor-core
    hint), the module again in configure_model, which runs in every training process."""
    if device.type == "cuda":
        torch.set_float32_matmul_precision("high")


def auto_precision(accelerator: object = "auto") -> str:
    """What an unset --trainer.precision means: bf16-mixed on a CUDA GPU, 32-true elsewhere (on a CPU the
    mixed modes run about 10x slower).

    Decided from the Trainer's accelerator setting without initialising CUDA (which would break `ddp_fork`
    and notebook launches): `torch.cuda.is_available()` only counts devices, through NVML once Lightning is
    imported. Whether the GPU has bf16 is checked later, in the training process (check_precision)."""
    name = str(accelerator).lower()
    if name in ("gpu", "cuda") or (name == "auto" and torch.cuda.is_available()):
        return "bf16-mixed"
    return "32-true"


def check_precision(device: torch.device, precision: str) -> None:
    """In the training process, once its GPU is set up: refuse bf16 on a GPU without it (before Ampere, e.g.
    V100, T4), where torch would emulate it many times slower."""
    if device.type != "cuda" or not str(precision).startswith("bf16"):
        return
    major, minor = torch.cuda.get_device_capability(device)
    if major < 8:
        from gpt_lightning.errors import UserError

        raise UserError(
            f"--trainer.precision {precision} needs bf16, which this GPU ({torch.cuda.get_device_name(device)}, "
            f"compute capability {major}.{minor}) lacks (bf16-mixed is also what an unset precision means on a "
            "GPU); pass --trainer.precision=16-mixed."
        )


def resolve_device(device: str) -> torch.device:
    """auto: the GPU where there is one, else the CPU."""
    from gpt_lightning.errors import UserError

    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise UserError("--device cuda was asked for but PyTorch sees no CUDA GPU; use --device cpu (or auto).")
    return torch.device(device)
