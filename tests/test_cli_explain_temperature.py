"""``crossent explain --temperature``: bad values refused in one line, the table, the JSON and the
page of a toy distribution against numpy, a text's JSON, and a wrong number failing the command."""

from __future__ import annotations

import dataclasses
import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

import crossent.losses.cross_entropy
import crossent.models
from crossent.cli import main
from crossent.losses.cross_entropy import CrossEntropyStats
from crossent.models import HFCausalLM
from report.parsing import ParsedPage


def _run(arguments: list[str]) -> int | str | None:
    try:
        return main(["explain", *arguments])
    except SystemExit as exit:  # argparse's own errors exit from inside the parser
        return exit.code


@pytest.mark.parametrize("value", ["0", "-1", "nan", "inf", "-inf", "warm"])
def test_a_temperature_that_is_not_positive_and_finite_is_refused(
    value: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _run(["--temperature", "2", f"--temperature={value}"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.count("\n") == 1, captured.err
    assert f"argument --temperature: expected a finite number > 0, got '{value}'" in captured.err


def test_stability_with_a_temperature_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    assert _run(["--stability", "--temperature", "2"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == "crossent: error: --stability takes no --temperature\n"


def test_a_bad_temperature_exits_2_from_a_process() -> None:
    run = subprocess.run(
        [sys.executable, "-m", "crossent", "explain", "--temperature", "0"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 2, run.stderr
    assert run.stdout == ""
    assert run.stderr.count("\n") == 1
    assert "--temperature: expected a finite number > 0, got '0'" in run.stderr


def test_the_help_says_repeatable_and_the_default(capsys: pytest.CaptureFixture[str]) -> None:
    assert _run(["--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "--temperature T" in text
    assert "repeatable (default: none)" in text


def _animals_at(temperature: float) -> tuple[np.ndarray, float, float]:
    """The three animals' ``q_T``, ``-ln q_T(cat)`` and ``H(q_T)`` with numpy."""
    q = np.array([0.2, 0.7, 0.1]) ** (1 / temperature)
    q /= q.sum()
    return q, -math.log(q[1]), -float(np.sum(q * np.log(q)))


def test_the_three_animals_at_two_temperatures(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    json_path, html_path = tmp_path / "t.json", tmp_path / "t.html"
    code = _run(["--temperature", "2", "--temperature", "0.5", "--json", str(json_path),
                 "--html", str(html_path)])  # fmt: skip
    assert code == 0
    printed = capsys.readouterr().out
    record = json.loads(json_path.read_text())["temperatures"]
    page = ParsedPage(html_path.read_text())
    table = page.rows["temperature"]
    assert table[0][:4] == ["T", "q(dog)", "q(cat) target", "q(fish)"]
    for index, temperature in enumerate([0.5, 1.0, 2.0]):
        q, loss, entropy = _animals_at(temperature)
        row = record["rows"][index]
        assert row["temperature"] == temperature
        assert row["q"] == pytest.approx(q.tolist(), rel=1e-12)
        assert row["target_probability"] == pytest.approx(q[1], rel=1e-12)
        assert row["nats"] == pytest.approx(loss, rel=1e-12)
        assert row["perplexity"] == pytest.approx(math.exp(loss), rel=1e-12)
        assert row["entropy_nats"] == pytest.approx(entropy, rel=1e-12)
        assert row["excess_nats"] == pytest.approx(loss - entropy, rel=1e-10)
        texts = [f"{temperature:g}", *(f"{value:.6g}" for value in q), f"{loss:.6f}",
                 f"{loss / math.log(2):.6f}", f"{math.exp(loss):.6f}", f"{entropy:.6f}",
                 f"{loss - entropy:.6f}"]  # fmt: skip
        assert texts in [line.split() for line in printed.splitlines()]
        assert table[index + 1] == texts
    assert all(check["agrees"] for check in record["checks"])
    assert "Temperature checks:" in printed
    assert "T -> inf" in printed


def test_a_wrong_number_at_a_temperature_fails_the_command(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The scan's numbers are verified: a wrong crossent loss makes the command exit 1."""
    real = crossent.losses.cross_entropy.cross_entropy_with_stats  # what the scan imports

    def shifted(*args: Any, **kwargs: Any) -> CrossEntropyStats:
        stats = real(*args, **kwargs)
        return dataclasses.replace(stats, loss=stats.loss + 0.01)

    monkeypatch.setattr("crossent.explain.temperature.cross_entropy_with_stats", shifted)
    assert _run(["--temperature", "2"]) == 1
    error = capsys.readouterr().err
    assert error.startswith("crossent: error: checks disagree: T = 1: H(p, q_T), the sum of")


def test_a_text_at_temperatures(
    smollm2: HFCausalLM,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setattr(crossent.models, "load_model", lambda *args, **kwargs: smollm2)
    path = tmp_path / "text.json"
    assert _run(["Every effort", "--temperature", "3", "--json", str(path)]) == 0
    printed = capsys.readouterr().out
    assert "mean loss, nats" in printed
    record = json.loads(path.read_text())
    rows = record["temperatures"]["rows"]
    assert [row["temperature"] for row in rows] == [1.0, 3.0]
    assert rows[0]["nats"] == pytest.approx(record["nats"], rel=1e-12)
    with torch.no_grad():
        logits = smollm2.model(torch.tensor([record["input_ids"]])).logits[0].double()  # (T, V)
    targets = torch.tensor([token["token_id"] for token in record["tokens"]])
    log_q = torch.log_softmax(logits / 3, dim=-1)
    assert rows[1]["nats"] == pytest.approx(
        -log_q[torch.arange(len(targets)), targets].mean().item(), abs=1e-4
    )
    assert rows[1]["entropy_nats"] == pytest.approx(
        -(log_q.exp() * log_q).sum(-1).mean().item(), abs=1e-4
    )
    assert all(check["agrees"] for check in record["temperatures"]["checks"])
