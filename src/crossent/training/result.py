"""What a training run hands back: :class:`TrainResult`, also when it is interrupted."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from crossent.training.config import TrainConfig
from crossent.training.data import TextSplit
from crossent.training.records import EvalRecord, TrainRecord


@dataclass(frozen=True)
class TrainResult:
    """What a run did; :func:`crossent.report.training.write_training_pages` draws it.

    Attributes:
        config: the run's settings (a resumed run's: those it was started with, extended).
        out: the output folder.
        best: the record of the lowest validation loss; its checkpoint is ``out/best``.
        records: every evaluation, in order (step 0 first).
        stopped: why the run ended: "max_steps", "patience", "max_minutes", "until_step" or
            "interrupted".
        parameters: the model's parameter count.
        split: the training and validation texts' sizes.
        train_tokens: tokens of the training text (prefix included).
        validation_tokens: tokens the validation loss is computed over.
        train_log: the training loss every ``log_every`` steps (step 0 first).
        vocab_size: the tokenizer's vocabulary size as built: a BPE trained on a small text
            can have fewer tokens than ``config.vocab_size`` asked for.
        step: the optimizer steps taken; ``out/last`` is at ``records[-1].step``, which is
            smaller when the run was interrupted between evaluations.
        skipped_steps: steps not taken because their loss or gradient was NaN or infinite
            (``config.skip_nonfinite``); they count in ``step``.
    """

    config: TrainConfig
    out: Path
    best: EvalRecord
    records: list[EvalRecord]
    stopped: str
    parameters: int
    split: TextSplit
    train_tokens: int
    validation_tokens: int
    train_log: list[TrainRecord]
    vocab_size: int
    step: int
    skipped_steps: int = 0


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C (SIGINT) during training, with what the run had done: ``result``.

    ``result.stopped`` is ``"interrupted"``; ``out/last`` holds the latest evaluation, from which
    ``crossent train --resume OUT`` continues.
    """

    def __init__(self, result: TrainResult) -> None:
        super().__init__(f"training interrupted at step {result.step}")
        self.result = result
