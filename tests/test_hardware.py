"""crossent.hardware: bf16 matrix support read from /proc/cpuinfo's flags (issue 14)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from crossent.hardware import (
    BF16_MATMUL_FLAGS,
    bf16_matmul_is_fast,
    bf16_matrix_flags,
    cpu_flags,
    cpu_model,
)

SAPPHIRE_RAPIDS = """processor\t: 0
vendor_id\t: GenuineIntel
model name\t: Intel(R) Xeon(R) Platinum 8480+
flags\t\t: fpu vme sse2 avx2 avx512f avx512_bf16 avx512_fp16 amx_bf16 amx_tile amx_int8

processor\t: 1
flags\t\t: fpu vme sse2 avx2 avx512f avx512_bf16 avx512_fp16 amx_bf16 amx_tile amx_int8
"""
ZEN3 = "processor\t: 0\nmodel name\t: AMD EPYC 7763\nflags\t\t: fpu sse2 avx avx2 fma\n"
COOPER_LAKE = "processor : 0\nflags : fpu avx2 avx512f avx512_bf16\n"
SKYLAKE = "processor : 0\nflags : fpu avx2 avx512f avx512bw avx512_vnni\n"


@pytest.mark.parametrize(
    ("cpuinfo", "fast"),
    [(SAPPHIRE_RAPIDS, True), (COOPER_LAKE, True), (ZEN3, False), (SKYLAKE, False), ("", False)],
)
def test_bf16_matmul_is_fast_reads_the_amx_or_avx512_bf16_flag(cpuinfo: str, fast: bool) -> None:
    assert bf16_matmul_is_fast("cpu", cpuinfo=cpuinfo) is fast


def test_the_flags_are_the_words_of_the_flags_line_and_nothing_else() -> None:
    flags = cpu_flags(SAPPHIRE_RAPIDS)
    assert {"amx_bf16", "avx512_bf16", "fpu"} <= flags
    assert "GenuineIntel" not in flags
    assert "Platinum" not in flags
    # "avx512_bf16" must not be found inside a longer flag
    assert not bf16_matmul_is_fast(cpuinfo="flags : avx512_bf16x amx_bf16_not\n")


def test_this_machine_against_grep_of_proc_cpuinfo() -> None:
    """The oracle: grep for the two flags as whole words in the machine's /proc/cpuinfo."""
    if not Path("/proc/cpuinfo").exists():
        pytest.skip("no /proc/cpuinfo on this system (not Linux)")
    pattern = "|".join(BF16_MATMUL_FLAGS)
    found = subprocess.run(
        ["grep", "-m1", "-wE", pattern, "/proc/cpuinfo"], capture_output=True, check=False
    )
    assert bf16_matmul_is_fast() is (found.returncode == 0)
    assert bf16_matmul_is_fast("cpu:0") is (found.returncode == 0)


def test_other_devices() -> None:
    import torch

    assert bf16_matmul_is_fast("cuda") is (
        torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    )
    assert bf16_matmul_is_fast("meta") is False


def test_the_model_and_the_bf16_flags_in_order_come_from_cpuinfo() -> None:
    assert cpu_model(SAPPHIRE_RAPIDS) == "Intel(R) Xeon(R) Platinum 8480+"
    assert bf16_matrix_flags(SAPPHIRE_RAPIDS) == ("amx_bf16", "avx512_bf16")
    assert cpu_model(ZEN3) == "AMD EPYC 7763"
    assert bf16_matrix_flags(ZEN3) == ()
    assert bf16_matrix_flags(COOPER_LAKE) == ("avx512_bf16",)
    assert cpu_model("") == "unknown CPU"


def test_this_machine_model_against_its_own_cpuinfo() -> None:
    cpuinfo = Path("/proc/cpuinfo")
    if not cpuinfo.exists():
        pytest.skip("no /proc/cpuinfo on this system (not Linux)")
    names = [
        line.split(":", 1)[1].strip()
        for line in cpuinfo.read_text().splitlines()
        if line.startswith("model name")
    ]
    assert cpu_model() == (names[0] if names else "unknown CPU")
