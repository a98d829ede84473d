"""What the machine can do fast: the CPU's model and whether it multiplies bf16 matrices natively.

Many current x86 CPUs multiply bf16 matrices 2-3x faster than fp32: Intel's AMX (flag
``amx_bf16``) and AVX512-BF16 (``avx512_bf16``, also on AMD Zen 4 and later). Without either,
PyTorch converts bf16 to fp32 on the fly and bf16 is no faster, often slower. The flags come from
``/proc/cpuinfo`` (Linux); elsewhere the CPU is reported as unknown and bf16 as not fast. A CUDA
device counts when PyTorch says it supports bf16. A module of the lowest layer: it reads a file,
and imports PyTorch only when asked about CUDA.
"""

from __future__ import annotations

from pathlib import Path

CPUINFO = Path("/proc/cpuinfo")

#: The ``/proc/cpuinfo`` flags of bf16 matrix instructions, the fastest first.
BF16_MATRIX_FLAGS = ("amx_bf16", "avx512_bf16")


def _cpuinfo_field(name: str, cpuinfo: Path) -> str | None:
    """The value of the first ``name : value`` line of ``cpuinfo``, None when it has none."""
    try:
        text = cpuinfo.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == name:
            return value.strip()
    return None


def cpu_model(cpuinfo: Path = CPUINFO) -> str:
    """The CPU's model name (``model name`` of ``/proc/cpuinfo``), or ``"unknown CPU"``."""
    return _cpuinfo_field("model name", cpuinfo) or "unknown CPU"


def cpu_flags(cpuinfo: Path = CPUINFO) -> frozenset[str]:
    """The CPU's feature flags (``flags`` of ``/proc/cpuinfo``); empty when unreadable."""
    return frozenset((_cpuinfo_field("flags", cpuinfo) or "").split())


def bf16_matrix_flags(cpuinfo: Path = CPUINFO) -> tuple[str, ...]:
    """Which of :data:`BF16_MATRIX_FLAGS` the CPU has, in that order (empty: none)."""
    flags = cpu_flags(cpuinfo)
    return tuple(flag for flag in BF16_MATRIX_FLAGS if flag in flags)


def bf16_matmul_is_fast() -> bool:
    """Whether bf16 matrix products run natively here: a CUDA device with bf16 support, or a CPU
    with AMX or AVX512-BF16."""
    if bf16_matrix_flags():
        return True
    import torch

    return bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())
