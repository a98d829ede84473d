"""``metrics.jsonl`` with both kinds of line: training records every ``log_every`` steps and
evaluations (issue 11, item 14). Expected lines are written out by hand here."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from crossent.training.records import (
    EvalRecord,
    TrainRecord,
    read_metrics,
    read_train_log,
    write_metrics,
)

EVALUATIONS = [
    EvalRecord(0, 0, 5.0, 5.1, 2.0, 1e-3, 0.0),
    EvalRecord(4, 64, 4.0, 4.5, 1.8, 1e-3, 2.0),
]
LOG = [
    TrainRecord(0, 0, 5.0, 1e-3, 0.0, train_objective=3.0),
    TrainRecord(2, 32, 4.5, 1e-3, 1.0, train_objective=2.5),
    TrainRecord(4, 64, 3.5, 1e-3, 2.0),
]


def test_both_kinds_are_written_in_order_of_step_and_read_back(tmp_path: Path) -> None:
    path = tmp_path / "metrics.jsonl"
    write_metrics(path, EVALUATIONS, LOG)
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert [(line["kind"], line["step"]) for line in lines] == [
        ("train", 0), ("eval", 0), ("train", 2), ("train", 4), ("eval", 4),
    ]  # fmt: skip
    assert lines[0] == {
        "kind": "train", "step": 0, "tokens_seen": 0, "train_loss": 5.0, "lr": 1e-3,
        "elapsed_s": 0.0, "train_objective": 3.0,
    }  # fmt: skip
    assert "train_objective" not in lines[3]  # none: not written
    assert read_metrics(path) == EVALUATIONS
    assert read_train_log(path) == LOG


def test_a_line_without_kind_is_an_evaluation_and_an_unknown_kind_is_named(tmp_path: Path) -> None:
    path = tmp_path / "metrics.jsonl"
    path.write_text(EVALUATIONS[0].to_json() + "\n")  # as metrics.jsonl was before kinds
    assert read_metrics(path) == EVALUATIONS[:1]
    assert read_train_log(path) == []
    path.write_text(json.dumps({"kind": "test", **EVALUATIONS[0].to_dict()}) + "\n")
    with pytest.raises(ValueError, match=r"line 1: .*kind is 'train' or 'eval', not 'test'"):
        read_metrics(path)
