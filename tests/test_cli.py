"""The ``crossent`` command as a user runs it: a real subprocess, exit codes and output."""

from __future__ import annotations

import subprocess
import sys

import pytest


def _crossent(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "crossent", *args], capture_output=True, text=True, check=False
    )


def test_bench_prints_a_row_per_implementation_with_a_small_error() -> None:
    done = _crossent(
        "bench",
        "--tokens",
        "32",
        "--dim",
        "16",
        "--vocab",
        "1000",
        "--repeats",
        "1",
        "--impl",
        "torch",
        "--impl",
        "crossent",
        "--impl",
        "floor",
    )
    assert done.returncode == 0, done.stderr
    label = "N=32 d=16 V=1000 float32"
    rows = [
        line[len(label) :].split() for line in done.stdout.splitlines() if line.startswith(label)
    ]
    assert [row[0] for row in rows] == ["torch", "crossent", "floor"]
    for row in rows[:2]:
        loss, error = float(row[-2]), float(row[-1])
        # Logits of std ~2 over 1000 classes: the loss is near ln(1000) + 2 = 8.9.
        assert 7.0 < loss < 11.0
        assert error < 1e-5
    assert rows[2][-2:] == ["-", "-"]  # the floor computes no loss


@pytest.mark.parametrize(
    ("args", "complaint"),
    [
        ((), "the following arguments are required: COMMAND"),
        (("bench", "--tokens", "0"), "expected a positive integer, got 0"),
        (("bench", "--vocab", "ten"), "expected a positive integer, got 'ten'"),
        (("bench", "--impl", "liger"), "invalid choice: 'liger'"),
        (("bench", "--dtype", "int8"), "invalid choice: 'int8'"),
        (("frobnicate",), "invalid choice: 'frobnicate'"),
    ],
)
def test_bad_arguments_give_one_line_and_exit_code_2(args: tuple[str, ...], complaint: str) -> None:
    done = _crossent(*args)
    assert done.returncode == 2
    assert done.stdout == ""
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert complaint in lines[0]
    assert "Traceback" not in done.stderr


def test_version() -> None:
    done = _crossent("--version")
    assert done.returncode == 0
    assert done.stdout.startswith("crossent ")
