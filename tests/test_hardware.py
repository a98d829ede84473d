"""crossent.hardware: the CPU's model and its bf16 matrix instructions, read from a cpuinfo file
(issue 14). The oracle is the file's text itself."""

from __future__ import annotations

from pathlib import Path

from crossent.hardware import BF16_MATRIX_FLAGS, bf16_matrix_flags, cpu_flags, cpu_model

SAPPHIRE = """processor\t: 0
vendor_id\t: GenuineIntel
model name\t: Intel(R) Xeon(R) Platinum 8480+
flags\t\t: fpu sse2 avx2 avx512f avx512_bf16 amx_tile amx_bf16 amx_int8

processor\t: 1
model name\t: Intel(R) Xeon(R) Platinum 8480+
flags\t\t: fpu sse2 avx2 avx512f avx512_bf16 amx_tile amx_bf16 amx_int8
"""
ZEN3 = "processor\t: 0\nmodel name\t: AMD EPYC 7763 64-Core Processor\nflags\t\t: fpu avx2 fma\n"


def test_the_model_and_bf16_flags_come_from_cpuinfo(tmp_path: Path) -> None:
    path = tmp_path / "cpuinfo"
    path.write_text(SAPPHIRE)
    assert cpu_model(path) == "Intel(R) Xeon(R) Platinum 8480+"
    assert bf16_matrix_flags(path) == ("amx_bf16", "avx512_bf16")
    assert "amx_int8" in cpu_flags(path)
    path.write_text(ZEN3)
    assert cpu_model(path) == "AMD EPYC 7763 64-Core Processor"
    assert bf16_matrix_flags(path) == ()


def test_an_unreadable_cpuinfo_is_an_unknown_cpu_without_bf16(tmp_path: Path) -> None:
    missing = tmp_path / "absent"
    assert cpu_model(missing) == "unknown CPU"
    assert cpu_flags(missing) == frozenset()
    assert bf16_matrix_flags(missing) == ()


def test_this_machine_agrees_with_its_own_cpuinfo() -> None:
    cpuinfo = Path("/proc/cpuinfo")
    if not cpuinfo.exists():
        assert cpu_model() == "unknown CPU"
        return
    words = set(cpuinfo.read_text().split())
    assert set(bf16_matrix_flags()) == {flag for flag in BF16_MATRIX_FLAGS if flag in words}
