"""What the machine multiplies fast: whether bfloat16 matrix products beat float32 here.

Many current x86 CPUs multiply bf16 matrices two to three times faster than fp32: Intel's AMX
(flag ``amx_bf16``, Sapphire Rapids and later) and AVX512-BF16 (``avx512_bf16``, Cooper Lake,
Sapphire Rapids, AMD Zen 4 and later); PyTorch's oneDNN kernels use them. Other CPUs have no
bf16 arithmetic: PyTorch emulates it there, slower than fp32. On a GPU, bf16 is fast from
compute capability 8.0 (Ampere) on.

:func:`bf16_matmul_is_fast` is what ``--dtype auto`` asks: bf16 where it is fast, float32
elsewhere, so nobody pays bf16's approximate numbers (docs/benchmarks.md) for no speed. The CPU's
flags are read from ``/proc/cpuinfo`` (Linux); where that file is missing (macOS, Windows) the
answer is no, as nothing says otherwise.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["BF16_CPU_FLAGS", "bf16_matmul_is_fast", "cpu_flags"]

# The CPU flags (as Linux names them) of instructions that multiply bf16 matrices natively.
BF16_CPU_FLAGS = frozenset({"amx_bf16", "avx512_bf16"})
_CPUINFO = Path("/proc/cpuinfo")


def cpu_flags(cpuinfo: str | None = None) -> frozenset[str]:
    """The CPU's feature flags, from the ``flags`` lines of ``cpuinfo`` (default: the text of
    ``/proc/cpuinfo``; empty where it cannot be read)."""
    if cpuinfo is None:
        try:
            cpuinfo = _CPUINFO.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return frozenset()
    flags: set[str] = set()
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "flags":
            flags.update(value.split())
    return frozenset(flags)


def bf16_matmul_is_fast(device: str | None = None) -> bool:
    """Whether bfloat16 matrix products run natively, faster than float32, on ``device``.

    Args:
        device: ``"cpu"``, ``"cuda"``, ``"cuda:1"``...; None: the device crossent picks by
            default (CUDA when present, else the CPU).

    Returns:
        On a CPU: whether it has AMX-BF16 or AVX512-BF16 (:data:`BF16_CPU_FLAGS`). On CUDA:
        whether the GPU supports bf16 natively (compute capability 8.0 or more).
    """
    if device is None or device.startswith("cuda"):
        import torch  # only here: the CPU's answer needs no torch

        if torch.cuda.is_available():
            return bool(torch.cuda.is_bf16_supported(including_emulation=False))
        if device is not None:
            return False
    return not BF16_CPU_FLAGS.isdisjoint(cpu_flags())
