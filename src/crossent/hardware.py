"""What the machine multiplies fast: whether bfloat16 matrix products beat float32 here.

Many current x86 CPUs multiply bf16 matrices two to three times faster than fp32: Intel's AMX
tiles (flag ``amx_bf16``, Sapphire Rapids and later) and the AVX-512 BF16 dot products
(``avx512_bf16``, Cooper Lake, AMD Zen 4 and later); PyTorch's oneDNN kernels use them. Without
either, PyTorch's CPU bf16 matrix products convert to fp32 and are no faster (often slower) than
fp32 ones, so bf16 would cost accuracy for nothing. On a GPU, bf16 is fast from compute
capability 8.0 (Ampere) on.

:func:`bf16_matmul_is_fast` is what ``--dtype auto`` asks: bf16 where it is fast, float32
elsewhere, so nobody pays bf16's approximate numbers (docs/benchmarks.md) for no speed. The CPU's
flags are read from ``/proc/cpuinfo`` (Linux); where that file is missing (macOS, Windows) the
answer is no, as nothing says otherwise. This module imports nothing heavy: PyTorch only when a
CUDA device is asked about.
"""

from __future__ import annotations

from pathlib import Path

__all__ = [
    "BF16_MATMUL_FLAGS",
    "bf16_matmul_is_fast",
    "bf16_matrix_flags",
    "cpu_flags",
    "cpu_model",
]

# The /proc/cpuinfo flags of instructions that multiply bf16 matrices natively.
BF16_MATMUL_FLAGS = frozenset({"amx_bf16", "avx512_bf16"})

CPUINFO = Path("/proc/cpuinfo")


def _first_field(name: str, cpuinfo: str | None) -> str | None:
    """The value of the first ``name : value`` line of ``cpuinfo`` (default: the text of
    ``/proc/cpuinfo``), None when it has none or cannot be read."""
    if cpuinfo is None:
        try:
            cpuinfo = CPUINFO.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return None
    for line in cpuinfo.splitlines():
        key, colon, value = line.partition(":")
        if colon and key.strip() == name:
            return value.strip()
    return None


def cpu_flags(cpuinfo: str | None = None) -> frozenset[str]:
    """The CPU feature flags of ``/proc/cpuinfo`` (or of its text ``cpuinfo``), empty where it
    cannot be read (not Linux).

    The flags of the first processor are taken: the cores of one machine share them.

    >>> sorted(cpu_flags("processor : 0\\nflags : fpu avx2 amx_bf16\\n"))
    ['amx_bf16', 'avx2', 'fpu']
    """
    return frozenset((_first_field("flags", cpuinfo) or "").split())


def cpu_model(cpuinfo: str | None = None) -> str:
    """The CPU's model name (``model name`` of ``/proc/cpuinfo``, or of its text ``cpuinfo``),
    or ``"unknown CPU"``."""
    return _first_field("model name", cpuinfo) or "unknown CPU"


def bf16_matrix_flags(cpuinfo: str | None = None) -> tuple[str, ...]:
    """Which of :data:`BF16_MATMUL_FLAGS` the CPU has, AMX first (empty: none)."""
    flags = cpu_flags(cpuinfo)
    return tuple(flag for flag in ("amx_bf16", "avx512_bf16") if flag in flags)


def bf16_matmul_is_fast(device: str | None = None, cpuinfo: str | None = None) -> bool:
    """Whether bfloat16 matrix products run natively, faster than float32, on ``device``.

    Args:
        device: ``"cpu"`` (or ``"cpu:0"``...): True when the CPU has one of
            :data:`BF16_MATMUL_FLAGS`; ``"cuda"`` (``"cuda:1"``...): True when a CUDA device is
            present and supports bf16 natively (compute capability 8.0 or more); None: the
            device crossent picks by default (CUDA when present, else the CPU); any other
            device: False.
        cpuinfo: the text of ``/proc/cpuinfo`` to read instead of the machine's (for tests).

    >>> bf16_matmul_is_fast("cpu", cpuinfo="flags : fpu avx2 avx512f")
    False
    >>> bf16_matmul_is_fast("cpu", cpuinfo="flags : fpu avx2 avx512f avx512_bf16")
    True
    """
    kind = None if device is None else device.split(":", 1)[0]
    if kind in (None, "cuda"):
        import torch  # only here: the CPU's answer needs no torch

        if torch.cuda.is_available():
            return bool(torch.cuda.is_bf16_supported(including_emulation=False))
        if kind == "cuda":
            return False
        kind = "cpu"
    if kind == "cpu":
        return not cpu_flags(cpuinfo).isdisjoint(BF16_MATMUL_FLAGS)
    return False
