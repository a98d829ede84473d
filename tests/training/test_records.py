"""The training run's record, its file, the best evaluation and the early-stopping rule.

Every expected value is computed here from hand-written records, not read back from the
implementation.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pytest

from crossent.training.records import (
    EvalHistory,
    EvalRecord,
    best_evaluation,
    read_metrics,
    write_metrics,
)
from training.sample_records import BEST, RECORDS, ROWS


def test_record_round_trips_through_one_json_line() -> None:
    record = EvalRecord(7, 3584, 0.1 + 0.2, 1e-300, 2.0 / 3.0, 6e-4, 1234.5)
    line = record.to_json()
    assert "\n" not in line
    assert json.loads(line) == {
        "step": 7,
        "tokens_seen": 3584,
        "train_loss": 0.1 + 0.2,
        "val_loss": 1e-300,
        "val_bits_per_byte": 2.0 / 3.0,
        "lr": 6e-4,
        "elapsed_s": 1234.5,
    }
    assert EvalRecord.from_json(line) == record
    assert EvalRecord.from_dict(record.to_dict()) == record
    # a diverged run's losses come back as they were
    diverged = EvalRecord.from_json(
        EvalRecord(8, 4096, math.inf, math.nan, math.nan, 0.0, 1.0).to_json()
    )
    assert diverged.train_loss == math.inf
    assert math.isnan(diverged.val_loss)


def test_record_accepts_integers_for_floats() -> None:
    line = '{"step": 1, "tokens_seen": 2, "train_loss": 3, "val_loss": 4, ' + (
        '"val_bits_per_byte": 5, "lr": 0, "elapsed_s": 6}'
    )
    record = EvalRecord.from_json(line)
    assert record == EvalRecord(1, 2, 3.0, 4.0, 5.0, 0.0, 6.0)
    assert type(record.train_loss) is float


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"step": 1.0}, "step of an evaluation record must be an integer, not 1.0"),
        ({"tokens_seen": True}, "tokens_seen of an evaluation record must be an integer"),
        ({"val_loss": "4.5"}, "val_loss of an evaluation record must be a number, not '4.5'"),
        ({"lr": None}, "lr of an evaluation record must be a number"),
        ({"val_loss": None, "loss": 1.0}, "has the unknown field 'loss'"),
    ],
)
def test_record_rejects_wrong_fields(change: dict[str, object], message: str) -> None:
    data = {**RECORDS[1].to_dict(), **change}
    with pytest.raises(ValueError, match=re.escape(message)):
        EvalRecord.from_json(json.dumps(data))


def test_record_names_missing_fields_and_bad_json() -> None:
    data = RECORDS[1].to_dict()
    del data["elapsed_s"]
    with pytest.raises(ValueError, match="lacks elapsed_s"):
        EvalRecord.from_json(json.dumps(data))
    with pytest.raises(ValueError, match="not valid JSON"):
        EvalRecord.from_json('{"step": 1,')
    with pytest.raises(ValueError, match="is a JSON object"):
        EvalRecord.from_json("[1, 2]")


def test_read_metrics_reads_lines_and_names_a_bad_one(tmp_path: Path) -> None:
    path = tmp_path / "metrics.jsonl"
    path.write_text("".join(record.to_json() + "\n" for record in RECORDS) + "\n")
    assert read_metrics(path) == RECORDS
    path.write_text(RECORDS[0].to_json() + "\n" + '{"step": 2}\n')
    with pytest.raises(ValueError, match=r"metrics\.jsonl, line 2: .*lacks tokens_seen"):
        read_metrics(path)


def test_best_evaluation_is_the_earliest_lowest_finite_validation_loss() -> None:
    assert best_evaluation(RECORDS) == BEST == 4
    values = [math.nan, 3.0, 2.5, math.inf, 2.5, -math.inf]
    records = [
        EvalRecord(step, step, 1.0, value, 1.0, 0.0, 0.0) for step, value in enumerate(values)
    ]
    assert best_evaluation(records) == 2
    assert best_evaluation(records[:1]) is None
    assert best_evaluation([]) is None


def test_write_metrics_writes_what_read_metrics_reads(tmp_path: Path) -> None:
    path = tmp_path / "metrics.jsonl"
    write_metrics(path, RECORDS)
    assert path.read_text().splitlines() == [json.dumps({"kind": "eval", **dict(zip(
        ["step", "tokens_seen", "train_loss", "val_loss", "val_bits_per_byte", "lr", "elapsed_s"],
        row, strict=True,
    ))}) for row in ROWS]  # fmt: skip
    assert read_metrics(path) == RECORDS


def test_history_counts_evaluations_since_the_best_and_stops_at_patience() -> None:
    history = EvalHistory(patience=2)
    improved = [history.add(record) for record in RECORDS]
    # val loss falls to its lowest at row 4, then rises twice
    assert improved == [True, True, True, True, True, False, False]
    assert history.best == RECORDS[BEST]
    assert history.bad_evals == 2
    assert history.patience_spent
    assert not EvalHistory(patience=None, records=RECORDS, bad_evals=99).patience_spent


def test_history_never_takes_a_non_finite_loss_and_keeps_the_earliest_tie() -> None:
    history = EvalHistory(patience=3)
    values = [math.nan, 3.0, 3.0, math.inf]
    improved = [history.add(EvalRecord(s, s, 1.0, v, 1.0, 0.0, 0.0)) for s, v in enumerate(values)]
    assert improved == [False, True, False, False]
    assert history.best == EvalRecord(1, 1, 1.0, 3.0, 1.0, 0.0, 0.0)
    assert history.bad_evals == 2
    assert EvalHistory(patience=1).best is None
