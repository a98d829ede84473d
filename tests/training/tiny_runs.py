"""A tiny text and the settings of a tiny run, shared by the training tests that start runs."""

from __future__ import annotations

import dataclasses
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
