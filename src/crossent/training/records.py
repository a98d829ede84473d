"""What a training run records at each evaluation, the file it keeps them in, and the rule that
picks the best one and stops the run.

The training loop writes one :class:`EvalRecord` per evaluation as a line of ``metrics.jsonl``
(:func:`write_metrics`, read back by :func:`read_metrics`); :mod:`crossent.report.training`
draws them.

Conventions, written once here:

* **The best evaluation** is the one with the lowest finite validation loss, the earliest on a
  tie (:func:`best_evaluation`): the one whose checkpoint ``out/best`` keeps. Non-finite losses
  (a diverged run) are never chosen.
* **Early stopping** counts the evaluations since the best one; a run with ``patience`` stops
  when that count reaches it (:class:`EvalHistory`).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from crossent.files import write_text_atomically

METRICS_FILE = "metrics.jsonl"


@dataclass(frozen=True)
class EvalRecord:
    """What the training loop records at one evaluation: one line of ``metrics.jsonl``.

    Attributes:
        step: optimizer steps taken before this evaluation.
        tokens_seen: training tokens (targets scored) consumed by those steps, in total.
        train_loss: training loss of the steps since the previous evaluation, in nats per token,
            the mean over all their tokens.
        val_loss: loss on the whole validation set, in nats per token.
        val_bits_per_byte: the same loss in bits per byte of validation text.
        lr: the learning rate at this step.
        elapsed_s: wall-clock seconds since the run started.

    Example:
        >>> record = EvalRecord(100, 51200, 4.25, 4.5, 1.75, 3e-4, 12.5)
        >>> print(record.to_json())  # doctest: +NORMALIZE_WHITESPACE
        {"step": 100, "tokens_seen": 51200, "train_loss": 4.25, "val_loss": 4.5,
         "val_bits_per_byte": 1.75, "lr": 0.0003, "elapsed_s": 12.5}
        >>> EvalRecord.from_json(record.to_json()) == record
        True
    """

    step: int
    tokens_seen: int
    train_loss: float
    val_loss: float
    val_bits_per_byte: float
    lr: float
    elapsed_s: float

    def to_dict(self) -> dict[str, int | float]:
        """The record's fields by name, in the order of a ``metrics.jsonl`` line."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, object]) -> EvalRecord:
        """The record with the fields in ``data``; the inverse of :meth:`to_dict`.

        Raises:
            ValueError: if ``data`` does not have exactly the fields of a record, integers for
                ``step`` and ``tokens_seen`` and numbers for the others.
        """
        names = [field.name for field in fields(cls)]
        missing = [name for name in names if name not in data]
        unknown = [name for name in data if name not in names]
        problems = [f"lacks {name}" for name in missing]
        problems += [f"has the unknown field {name!r}" for name in unknown]
        if problems:
            raise ValueError(
                f"an evaluation record has the fields {', '.join(names)}; this one "
                + " and ".join(problems)
            )
        return cls(
            step=_count(data, "step"),
            tokens_seen=_count(data, "tokens_seen"),
            train_loss=_number(data, "train_loss"),
            val_loss=_number(data, "val_loss"),
            val_bits_per_byte=_number(data, "val_bits_per_byte"),
            lr=_number(data, "lr"),
            elapsed_s=_number(data, "elapsed_s"),
        )

    def to_json(self) -> str:
        """The record as one line of JSON, without the newline.

        A non-finite loss is written as ``NaN`` or ``Infinity``, as Python's :mod:`json` does,
        so it reads back as it was (strict JSON has no such numbers).
        """
        return json.dumps(self.to_dict())

    @classmethod
    def from_json(cls, line: str) -> EvalRecord:
        """The record a line of ``metrics.jsonl`` holds; the inverse of :meth:`to_json`.

        Raises:
            ValueError: if the line is not JSON, or its object is not a record (see
                :meth:`from_dict`).
        """
        try:
            data = json.loads(line)
        except json.JSONDecodeError as error:
            raise ValueError(f"an evaluation record is not valid JSON: {error}") from None
        if not isinstance(data, dict):
            raise ValueError(f"an evaluation record is a JSON object, not {line.strip()[:40]!r}")
        return cls.from_dict(data)


def _count(data: Mapping[str, object], name: str) -> int:
    value = data[name]
    # bool is a subclass of int, and a float must not pass as a count
    if not isinstance(value, int) or isinstance(value, bool):
        raise ValueError(f"{name} of an evaluation record must be an integer, not {value!r}")
    return value


def _number(data: Mapping[str, object], name: str) -> float:
    value = data[name]
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise ValueError(f"{name} of an evaluation record must be a number, not {value!r}")
    return float(value)


def write_metrics(path: str | os.PathLike[str], records: Sequence[EvalRecord]) -> None:
    """Write ``records`` to ``path`` as ``metrics.jsonl``, one line each, atomically."""
    write_text_atomically(path, "".join(record.to_json() + "\n" for record in records))


def read_metrics(path: str | os.PathLike[str]) -> list[EvalRecord]:
    """The records of a ``metrics.jsonl`` file, in file order; blank lines are skipped.

    Raises:
        ValueError: naming the file and line of the first record that cannot be read.
    """
    records = []
    with Path(path).open(encoding="utf-8") as file:
        for number, line in enumerate(file, start=1):
            if not line.strip():
                continue
            try:
                records.append(EvalRecord.from_json(line))
            except ValueError as error:
                raise ValueError(f"{path}, line {number}: {error}") from None
    return records


def best_evaluation(records: Sequence[EvalRecord]) -> int | None:
    """The index of the record with the lowest finite validation loss, the earliest on a tie.

    Returns None when there is no record with a finite validation loss.

    Example:
        >>> records = [EvalRecord(s, 10 * s, 5.0, v, 2.0, 1e-3, 1.0)
        ...            for s, v in [(0, 5.0), (1, 4.0), (2, 4.0), (3, float("nan"))]]
        >>> best_evaluation(records)
        1
    """
    finite = [index for index, record in enumerate(records) if math.isfinite(record.val_loss)]
    return min(finite, key=lambda index: records[index].val_loss, default=None)


class EvalHistory:
    """A run's evaluations so far, its best one, and the early-stopping rule.

    Args:
        patience: stop after this many evaluations without a new best; None never stops.
        records: the evaluations of a run being resumed, in order.
        bad_evals: the evaluations since the best one, as the resumed run saved it.

    Example:
        >>> history = EvalHistory(patience=2)
        >>> [history.add(EvalRecord(s, s, 5.0, v, 2.0, 1e-3, 1.0)) for s, v in
        ...  [(0, 5.0), (1, 4.0), (2, 4.0), (3, 4.5)]]
        [True, True, False, False]
        >>> history.best.step, history.bad_evals, history.patience_spent
        (1, 2, True)
    """

    def __init__(
        self, patience: int | None, records: Sequence[EvalRecord] = (), bad_evals: int = 0
    ) -> None:
        self.patience = patience
        self.records = list(records)
        self.bad_evals = bad_evals

    @property
    def best(self) -> EvalRecord | None:
        """The best evaluation so far (see the module docstring); None before a finite one."""
        index = best_evaluation(self.records)
        return None if index is None else self.records[index]

    def add(self, record: EvalRecord) -> bool:
        """Record the next evaluation; True when it is the new best."""
        self.records.append(record)
        improved = best_evaluation(self.records) == len(self.records) - 1
        self.bad_evals = 0 if improved else self.bad_evals + 1
        return improved

    @property
    def patience_spent(self) -> bool:
        """Whether ``patience`` evaluations have passed without a new best."""
        return self.patience is not None and self.bad_evals >= self.patience
