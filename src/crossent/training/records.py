"""What a training run records, the file it keeps the records in, and the rule that picks the
best evaluation and stops the run.

``metrics.jsonl`` (:func:`write_metrics`) holds two kinds of line, in order of step:

* ``{"kind": "train", ...}``, a :class:`TrainRecord`, every ``log_every`` steps (and at step 0
  and the last step): the training loss of the steps since the previous one;
* ``{"kind": "eval", ...}``, an :class:`EvalRecord`, at every evaluation: the validation loss,
  with the training loss of the steps since the previous evaluation.

:func:`read_metrics` reads the evaluations back, :func:`read_train_log` the training lines (a
line without ``kind`` is an evaluation, as every line was before training lines existed);
:mod:`crossent.report.training` draws both.

Conventions, written once here:

* **The training loss** (``train_loss``) is always the student's cross-entropy on its training
  rows, in nats per token, so that it compares with the validation loss. When the run minimises
  something else (a distillation loss with a teacher, label smoothing, z-loss), that objective is
  recorded beside it as ``train_objective``; otherwise ``train_objective`` is absent.

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
from crossent.metrics import nats_to_bits

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
        train_objective: the loss minimised over the same steps, when it is not the
            cross-entropy (see the module docstring); None otherwise, and then not written.

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
    train_objective: float | None = None

    def to_dict(self) -> dict[str, int | float]:
        """The record's fields by name, in the order of a ``metrics.jsonl`` line."""
        return _without_objective(asdict(self))

    @classmethod
    def from_dict(cls, data: Mapping[str, object]) -> EvalRecord:
        """The record with the fields in ``data``; the inverse of :meth:`to_dict`.

        Raises:
            ValueError: if ``data`` does not have exactly the fields of a record, integers for
                ``step`` and ``tokens_seen`` and numbers for the others.
        """
        _check_fields(cls, data, "an evaluation record")
        return cls(
            step=_count(data, "step"),
            tokens_seen=_count(data, "tokens_seen"),
            train_loss=_number(data, "train_loss"),
            val_loss=_number(data, "val_loss"),
            val_bits_per_byte=_number(data, "val_bits_per_byte"),
            lr=_number(data, "lr"),
            elapsed_s=_number(data, "elapsed_s"),
            train_objective=_objective(data),
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


@dataclass(frozen=True)
class TrainRecord:
    """The training loss logged every ``log_every`` steps: one ``"train"`` line of
    ``metrics.jsonl``.

    Attributes:
        step: optimizer steps taken (0: the loss of the first step's rows before any update).
        tokens_seen: training tokens consumed by those steps, in total.
        train_loss: the student's cross-entropy over the steps since the previous training
            record, in nats per token, the mean over all their tokens.
        lr: the learning rate at this step.
        elapsed_s: wall-clock seconds of training so far.
        train_objective: the loss minimised over the same steps, when it is not the
            cross-entropy; None otherwise, and then not written.

    Example:
        >>> record = TrainRecord(10, 5120, 4.5, 2e-3, 1.5, train_objective=3.25)
        >>> TrainRecord.from_dict(record.to_dict()) == record
        True
    """

    step: int
    tokens_seen: int
    train_loss: float
    lr: float
    elapsed_s: float
    train_objective: float | None = None

    def to_dict(self) -> dict[str, int | float]:
        """The record's fields by name, without ``kind``."""
        return _without_objective(asdict(self))

    @classmethod
    def from_dict(cls, data: Mapping[str, object]) -> TrainRecord:
        """The inverse of :meth:`to_dict`.

        Raises:
            ValueError: as :meth:`EvalRecord.from_dict`.
        """
        _check_fields(cls, data, "a training record")
        return cls(
            step=_count(data, "step", "a training record"),
            tokens_seen=_count(data, "tokens_seen", "a training record"),
            train_loss=_number(data, "train_loss", "a training record"),
            lr=_number(data, "lr", "a training record"),
            elapsed_s=_number(data, "elapsed_s", "a training record"),
            train_objective=_objective(data),
        )


def _without_objective(values: dict[str, object]) -> dict[str, int | float]:
    if values["train_objective"] is None:
        del values["train_objective"]
    return values  # type: ignore[return-value]


def _check_fields(
    cls: type[EvalRecord] | type[TrainRecord], data: Mapping[str, object], what: str
) -> None:
    names = [field.name for field in fields(cls)]
    optional = ("train_objective",)
    missing = [name for name in names if name not in data and name not in optional]
    unknown = [name for name in data if name not in names]
    problems = [f"lacks {name}" for name in missing]
    problems += [f"has the unknown field {name!r}" for name in unknown]
    if problems:
        required = [name for name in names if name not in optional]
        raise ValueError(
            f"{what} has the fields {', '.join(required)} (and optionally "
            f"{', '.join(optional)}); this one " + " and ".join(problems)
        )


def _count(data: Mapping[str, object], name: str, what: str = "an evaluation record") -> int:
    value = data[name]
    # bool is a subclass of int, and a float must not pass as a count
    if not isinstance(value, int) or isinstance(value, bool):
        raise ValueError(f"{name} of {what} must be an integer, not {value!r}")
    return value


def _number(data: Mapping[str, object], name: str, what: str = "an evaluation record") -> float:
    value = data[name]
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise ValueError(f"{name} of {what} must be a number, not {value!r}")
    return float(value)


def _objective(data: Mapping[str, object]) -> float | None:
    return None if data.get("train_objective") is None else _number(data, "train_objective")


def write_metrics(
    path: str | os.PathLike[str],
    records: Sequence[EvalRecord],
    train_log: Sequence[TrainRecord] = (),
) -> None:
    """Write ``metrics.jsonl`` atomically: the training and evaluation records, one line each,
    in order of step (at a step that has both, the training line first)."""
    lines = [(r.step, 0, json.dumps({"kind": "train", **r.to_dict()})) for r in train_log]
    lines += [(r.step, 1, json.dumps({"kind": "eval", **r.to_dict()})) for r in records]
    write_text_atomically(path, "".join(line + "\n" for *_, line in sorted(lines)))


def read_metrics(path: str | os.PathLike[str]) -> list[EvalRecord]:
    """The evaluation records of a ``metrics.jsonl`` file, in file order.

    Blank lines and training lines are skipped.

    Raises:
        ValueError: naming the file and line of the first record that cannot be read.
    """
    return [record for record in _read(path) if isinstance(record, EvalRecord)]


def read_train_log(path: str | os.PathLike[str]) -> list[TrainRecord]:
    """The training records of a ``metrics.jsonl`` file, in file order.

    Raises:
        ValueError: as :func:`read_metrics`.
    """
    return [record for record in _read(path) if isinstance(record, TrainRecord)]


def _read(path: str | os.PathLike[str]) -> list[EvalRecord | TrainRecord]:
    records: list[EvalRecord | TrainRecord] = []
    with Path(path).open(encoding="utf-8") as file:
        for number, line in enumerate(file, start=1):
            if not line.strip():
                continue
            try:
                records.append(_record(line))
            except ValueError as error:
                raise ValueError(f"{path}, line {number}: {error}") from None
    return records


def _record(line: str) -> EvalRecord | TrainRecord:
    try:
        data = json.loads(line)
    except json.JSONDecodeError as error:
        raise ValueError(f"a metrics line is not valid JSON: {error}") from None
    if not isinstance(data, dict):
        raise ValueError(f"a metrics line is a JSON object, not {line.strip()[:40]!r}")
    kind = data.pop("kind", "eval")
    if kind == "train":
        return TrainRecord.from_dict(data)
    if kind != "eval":
        raise ValueError(f"a metrics line's kind is 'train' or 'eval', not {kind!r}")
    return EvalRecord.from_dict(data)


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


def describe(record: EvalRecord, improved: bool) -> str:
    """The line ``crossent train`` prints for an evaluation; `` *`` marks a new best."""
    mark = " *" if improved else ""
    train = f"train {record.train_loss:.4f}"
    if record.train_objective is not None:
        train += f" (objective {record.train_objective:.4f})"
    loss = record.val_loss
    return (
        f"step {record.step}: {train}, val {loss:.4f} nats/token ({nats_to_bits(loss):.3f} "
        f"bits, ppl {math.exp(loss):.2f}, {record.val_bits_per_byte:.4f} bits/byte), "
        f"lr {record.lr:.2e}, {record.elapsed_s:.0f} s{mark}"
    )
