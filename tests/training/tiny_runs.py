"""A tiny text and the settings of a tiny run, shared by the training tests that start runs."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import time
from pathlib import Path

from crossent.training import TrainConfig

TEXT = "".join(
    f"Line {i}: the quick brown fox jumps over the lazy dog, and the cat sat on mat {i % 7}.\n"
    for i in range(60)
)


def write_text(folder: Path) -> Path:
    path = folder / "text.txt"
    path.write_text(TEXT, encoding="utf-8")
    return path


def tiny_config(text_file: Path, out: Path, **changes: object) -> TrainConfig:
    """A 2-layer GPT of 32-token rows on ``text_file``: a few steps take about a second."""
    config = TrainConfig(
        data=(str(text_file),),
        preset="tiny",
        context_length=32,
        vocab_size=300,
        batch_size=8,
        max_steps=4,
        eval_every=2,
        log_every=1,
        warmup_steps=1,
        lr=3e-3,
        patience=None,
        device="cpu",
        out=str(out),
    )
    return dataclasses.replace(config, **changes)  # type: ignore[arg-type]


def cli_flags(text_file: Path) -> list[str]:
    """``crossent train`` flags of the run :func:`tiny_config` describes, without ``--out``."""
    return [
        "--data", str(text_file), "--preset", "tiny", "--context-length", "32",
        "--vocab-size", "300", "--batch-size", "8", "--max-steps", "4", "--eval-every", "2",
        "--log-every", "1", "--warmup-steps", "1", "--lr", "3e-3", "--patience", "0",
        "--device", "cpu",
    ]  # fmt: skip


def wait_for_evaluations(metrics: Path, process: subprocess.Popen[str], count: int) -> None:
    """Wait until the run writing ``metrics`` has logged ``count`` evaluations (step 0's is
    the first); fail if ``process`` ends first or 5 minutes pass."""
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and process.poll() is None:
        if metrics.is_file():
            kinds = [json.loads(line)["kind"] for line in metrics.read_text().splitlines()]
            if kinds.count("eval") >= count:
                return
        time.sleep(0.2)
    raise AssertionError(f"fewer than {count} evaluations (exit code {process.poll()})")
