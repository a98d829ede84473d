"""What ``crossent bench`` prints besides the timings: the repeat count and the min, median and
max of the timed runs, a warning when they spread widely, and a legend naming every
implementation shown (issue 11, item 9). No test here asserts a timing."""

from __future__ import annotations

import re
import subprocess
import sys

from crossent.bench import IMPLEMENTATIONS, SPREAD_WARNING, BenchCase, BenchRow
from crossent.report.table import format_bench

CASE = BenchCase(32, 16, 1000, repeats=3)
IMPLS = ["torch", "crossent", "crossent-recompute", "floor"]


def test_the_command_shows_repeats_spread_and_a_legend() -> None:
    command = [sys.executable, "-m", "crossent", "bench", "--tokens", "32", "--dim", "16",
               "--vocab", "1000", "--repeats", "3"]  # fmt: skip
    for name in IMPLS:
        command += ["--impl", name]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    header = next(line for line in lines if line.startswith("case "))
    assert re.split(r"\s{2,}", header)[:6] == ["case", "impl", "runs", "min s", "median s", "max s"]
    rows = [re.split(r"\s{2,}", line) for line in lines if line.startswith(CASE.label)]
    assert [row[1] for row in rows] == IMPLS
    for row in rows:
        assert row[2] == "3"
        fastest, median, slowest = (float(value) for value in row[3:6])
        assert fastest <= median <= slowest
    legend = lines[lines.index("implementations:") + 1 :]
    assert [line.split()[0] for line in legend] == IMPLS
    for line, name in zip(legend, IMPLS, strict=True):
        assert line.split(None, 1)[1] == IMPLEMENTATIONS[name].description


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
