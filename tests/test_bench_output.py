"""What ``crossent bench`` prints besides the timings: the repeat count and the min, median and
max of the timed runs, a warning when they spread widely, and a legend naming every
implementation shown (issue 11, item 9). No test here asserts a timing."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import torch

from crossent.bench import (
    IMPLEMENTATIONS,
    SPREAD_WARNING,
    BenchCase,
    BenchRow,
    default_cases,
    quick_cases,
)
from crossent.hardware import bf16_matmul_is_fast
from crossent.report.table import format_bench

# Large enough that the floor's median, printed to 3 decimals, is not 0.000 on a quiet machine
# (about 10 ms: three products of 512 x 128 x 16000), small enough for a second of work.
CASE = BenchCase(512, 128, 16000, repeats=3)
IMPLS = ["torch", "crossent", "crossent-recompute", "floor"]
HEADER_FIELDS = ("cpu", "bf16 matrix instructions", "threads", "load average (1, 5, 15 min)")


def test_the_command_shows_repeats_spread_and_a_legend() -> None:
    command = [sys.executable, "-m", "crossent", "bench", "--tokens", str(CASE.tokens), "--dim",
               str(CASE.dim), "--vocab", str(CASE.vocab), "--repeats", "3"]  # fmt: skip
    for name in IMPLS:
        command += ["--impl", name]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    header = next(line for line in lines if line.startswith("case "))
    assert re.split(r"\s{2,}", header)[:8] == [
        "case", "impl", "runs", "min s", "median s", "max s", "x torch", "x floor",
    ]  # fmt: skip
    rows = [re.split(r"\s{2,}", line) for line in lines if line.startswith(CASE.label)]
    assert [row[1] for row in rows] == IMPLS
    floor_median = float(rows[IMPLS.index("floor")][4])
    assert floor_median > 0, rows  # else the ratio below cannot be checked: enlarge CASE
    for row in rows:
        assert row[2] == "3"
        fastest, median, slowest = (float(value) for value in row[3:6])
        assert fastest <= median <= slowest
        # x floor: the printed medians' ratio, up to their 3 printed decimals
        assert abs(float(row[7]) - median / floor_median) <= 0.01 + 0.002 / floor_median
    _check_machine_header(lines)
    legend = lines[lines.index("implementations:") + 1 :]
    assert [line.split()[0] for line in legend] == IMPLS
    for line, name in zip(legend, IMPLS, strict=True):
        assert line.split(None, 1)[1] == IMPLEMENTATIONS[name].description


def _check_machine_header(lines: list[str]) -> None:
    """The lines above the table name the CPU, its bf16 matrix instructions and the threads, as
    /proc/cpuinfo and PyTorch tell them to this test."""
    fields = dict(line.split(": ", 1) for line in lines if line.split(":")[0] in HEADER_FIELDS)
    assert set(fields) == set(HEADER_FIELDS), lines[:12]
    cpuinfo = Path("/proc/cpuinfo")
    text = cpuinfo.read_text() if cpuinfo.exists() else ""
    models = [line.split(":", 1)[1].strip() for line in text.splitlines() if "model name" in line]
    assert fields["cpu"] == (models[0] if models else "unknown CPU")
    words = set(text.split())
    present = [flag for flag in ("amx_bf16", "avx512_bf16") if flag in words]
    if present:
        assert fields["bf16 matrix instructions"] == f"yes ({', '.join(present)})"
    else:
        assert fields["bf16 matrix instructions"].startswith("no")
    assert fields["threads"] == str(torch.get_num_threads())
    assert len(fields["load average (1, 5, 15 min)"].split(", ")) == 3


def test_the_default_and_quick_cases_put_bf16_next_to_fp32_where_it_is_fast() -> None:
    fast = bf16_matmul_is_fast()
    for cases in (quick_cases(), default_cases()):
        heads = list(dict.fromkeys((case.tokens, case.dim, case.vocab) for case in cases))
        dtypes = ["float32", "bfloat16"] if fast else ["float32"]
        assert [case.label for case in cases] == [
            BenchCase(*head, dtype).label for head in heads for dtype in dtypes
        ]


def _row(name: str, times: tuple[float, ...]) -> BenchRow:
    return BenchRow(name, CASE, times, peak_mib=10.0, loss=9.6, error=1e-7)


def test_a_wide_spread_is_one_line_of_warning_and_a_narrow_one_none() -> None:
    narrow = format_bench([_row("torch", (1.0, 1.2, 1.1)), _row("floor", (0.5, 0.55, 0.6))])
    assert "warning" not in narrow
    wide = format_bench([_row("torch", (1.0, 1.2, 1.1)), _row("crossent", (2.52, 1.33, 1.20))])
    warnings = [line for line in wide.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1
    assert f"more than {SPREAD_WARNING:g}x the fastest (crossent 2.1x)" in warnings[0]
    assert "torch" not in warnings[0].split("(", 1)[1].split(")")[0]
    # min, median and max of the given times, whatever their order
    (row,) = [line for line in wide.splitlines() if line.startswith(CASE.label + "  crossent")]
    assert re.split(r"\s{2,}", row)[2:6] == ["3", "1.200", "1.330", "2.520"]


def test_every_implementation_has_a_description() -> None:
    for name, implementation in IMPLEMENTATIONS.items():
        assert implementation.description, name
        assert "\n" not in implementation.description
