"""What the machine computes fast: whether bfloat16 matrix products beat float32 here.

Many current x86 CPUs multiply bf16 matrices two to three times faster than fp32: Intel's AMX
tiles (``amx_bf16``, Sapphire Rapids and later) and the AVX-512 BF16 dot products
(``avx512_bf16``, Cooper Lake, Zen 4 and later). Without either, PyTorch's CPU bf16 matrix
products convert to fp32 and are no faster (often slower) than fp32 ones, so bf16 would cost
accuracy for nothing. The kernel says which the CPU has in the ``flags`` line of
``/proc/cpuinfo``; a CUDA device has fast bf16 where PyTorch says it supports it (Ampere and
later).

This module imports nothing heavy: PyTorch only when a CUDA device is asked about.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["BF16_MATMUL_FLAGS", "bf16_matmul_is_fast", "cpu_flags"]

# The /proc/cpuinfo flags of a CPU whose bf16 matrix products run faster than fp32 ones.
BF16_MATMUL_FLAGS = ("amx_bf16", "avx512_bf16")

CPUINFO = Path("/proc/cpuinfo")


def cpu_flags(cpuinfo: str | None = None) -> frozenset[str]:
    """The CPU feature flags of ``/proc/cpuinfo`` (or of its text ``cpuinfo``), empty where it
    cannot be read (not Linux).

    The flags of the first processor are taken: the cores of one machine share them.

    >>> sorted(cpu_flags("processor : 0\\nflags : fpu avx2 amx_bf16\\n"))
    ['amx_bf16', 'avx2', 'fpu']
    """
    if cpuinfo is None:
        try:
            cpuinfo = CPUINFO.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return frozenset()
    for line in cpuinfo.splitlines():
        name, colon, value = line.partition(":")
        if colon and name.strip() == "flags":
            return frozenset(value.split())
    return frozenset()


def bf16_matmul_is_fast(device: str = "cpu", cpuinfo: str | None = None) -> bool:
    """Whether bfloat16 matrix products run faster than float32 ones on ``device``.

    Args:
        device: ``"cpu"`` (or ``"cpu:0"``...): True when the CPU has one of
            :data:`BF16_MATMUL_FLAGS` in ``/proc/cpuinfo``; ``"cuda"`` (``"cuda:1"``...): True
            when a CUDA device is present and supports bf16 (``torch.cuda.is_bf16_supported``);
            any other device: False.
        cpuinfo: the text of ``/proc/cpuinfo`` to read instead of the machine's (for tests).

    >>> bf16_matmul_is_fast(cpuinfo="flags : fpu avx2 avx512f")
    False
    >>> bf16_matmul_is_fast(cpuinfo="flags : fpu avx2 avx512f avx512_bf16")
    True
    """
    kind = device.split(":", 1)[0]
    if kind == "cpu":
        return not cpu_flags(cpuinfo).isdisjoint(BF16_MATMUL_FLAGS)
    if kind == "cuda":
        import torch

        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    return False
