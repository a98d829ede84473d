"""``crossent explain`` on the command line: bad input in real processes, outputs in-process."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import crossent.explain.distributions
from crossent.cli import main

BAD_INPUT = [
    (["--probs=-0.1,0.6,0.5", "--target", "1"], "q('0') is -0.1; probabilities must be non-neg"),
    (["--probs", "0.2,0.7,0.2", "--target", "1"], "the probabilities q sum to 1.1, not 1"),
    (["--probs", "0.2,0.7,0.1", "--p", "0.5,0.6,0"], "the probabilities p sum to 1.1, not 1"),
    (
        ["--probs", "0.2,0.7,0.1", "--labels", "dog,cat,fish", "--target", "cow"],
        "target 'cow' is not one of the labels: dog, cat, fish",
    ),
    (["--probs", "0.2,0.7,0.1", "--labels", "dog,cat", "--target", "cat"], "2 labels for 3"),
    (["--probs", "0.2,0.8", "--p", "0.1,0.1,0.8"], "p has 3 probabilities for 2 classes"),
    ([""], "the text is empty"),
    (["--probs", "0.2,zero", "--target", "1"], "expected comma-separated numbers"),
    (["Every effort", "--probs", "0.5,0.5"], "a text takes no --probs"),
]


@pytest.mark.parametrize(("arguments", "message"), BAD_INPUT)
def test_bad_input_is_refused_in_one_line(
    arguments: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code: int | str | None
    try:
        code = main(["explain", *arguments])
    except SystemExit as exit:  # argparse's own errors exit from inside the parser
        code = exit.code
    assert code == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.count("\n") == 1, captured.err
    assert message in captured.err


def test_bad_input_exits_2_from_a_process() -> None:
    """Two of the cases in real processes, started at once (each imports torch)."""
    cases = [BAD_INPUT[1], BAD_INPUT[7]]
    runs = [
        subprocess.Popen(
            [sys.executable, "-m", "crossent", "explain", *arguments],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for arguments, _ in cases
    ]
    for run, (arguments, message) in zip(runs, cases, strict=True):
        stdout, stderr = run.communicate(timeout=300)
        assert run.returncode == 2, (arguments, stderr)
        assert stdout == ""
        assert stderr.count("\n") == 1, stderr
        assert message in stderr, (arguments, stderr)


def test_toy_outputs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    json_path, html_path, plots = tmp_path / "cat.json", tmp_path / "cat.html", tmp_path / "plots"
    code = main(
        ["explain", "--probs", "0.2,0.7,0.1", "--labels", "dog,cat,fish", "--target", "cat",
         "--json", str(json_path), "--html", str(html_path), "--plots", str(plots)]
    )  # fmt: skip
    assert code == 0
    printed = capsys.readouterr().out
    assert "H(p, q) = 0.356675 nats = 0.514573 bits; perplexity e^H = 1.428571" in printed
    record = json.loads(json_path.read_text())
    assert record["nats"] == pytest.approx(-math.log(0.7), rel=1e-15)
    assert record["bits"] == pytest.approx(-math.log2(0.7), rel=1e-15)
    assert record["perplexity"] == pytest.approx(1 / 0.7, rel=1e-15)
    assert record["labels"] == ["dog", "cat", "fish"]
    assert html_path.read_text().startswith("<!DOCTYPE html>")
    names = sorted(path.name for path in plots.iterdir())
    assert names == ["binary_curves.png", "distributions.png", "loss_curve.png"]
    for path in plots.iterdir():
        assert path.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")


def test_without_input_it_shows_the_three_animals(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["explain"]) == 0
    printed = capsys.readouterr().out
    assert "the three animals" in printed
    assert "cat    1           0.7            -0.356675  0.356675" in printed


def test_soft_target_and_label_smoothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "smooth.json"
    code = main(
        ["explain", "--logits", "2,1,0.1", "--target", "0", "--label-smoothing", "0.1",
         "--json", str(path)]
    )  # fmt: skip
    assert code == 0
    record = json.loads(path.read_text())
    logits = torch.tensor([[2.0, 1.0, 0.1]], dtype=torch.float64)
    expected = torch.nn.functional.cross_entropy(logits, torch.tensor([0]), label_smoothing=0.1)
    assert record["nats"] == pytest.approx(expected.item(), rel=1e-14)
    assert record["smoothed_p"] == pytest.approx([0.9 + 0.1 / 3, 0.1 / 3, 0.1 / 3])
    assert "H(p) + KL(p || q)" in capsys.readouterr().out


def test_stability_of_given_logits(tmp_path: Path) -> None:
    path = tmp_path / "stability.json"
    code = main(
        ["explain", "--stability", "--logits=-1000,0,1000", "--labels", "a,b,c",
         "--target", "a", "--json", str(path)]
    )  # fmt: skip
    assert code == 0
    rows = json.loads(path.read_text())["rows"]
    assert [row["dtype"] for row in rows] == ["float32", "float64"]
    assert all(row["exact_nats"] == 2000.0 for row in rows)
    assert all(row["log_space_nats"] == 2000.0 for row in rows)
    assert all(row["naive_nats"] == pytest.approx(23.02585, rel=1e-6) for row in rows)


def test_a_disagreeing_check_fails_the_command(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The command verifies its numbers: a wrong crossent loss makes it exit 1, saying which."""
    real = crossent.cross_entropy  # what crossent.explain.distributions imports and calls
    monkeypatch.setattr(
        crossent.explain.distributions,
        "cross_entropy",
        lambda *args, **kwargs: real(*args, **kwargs) + 0.01,
    )
    assert main(["explain", "--probs", "0.2,0.7,0.1", "--target", "1"]) == 1
    error = capsys.readouterr().err
    assert error.startswith("crossent: error: checks disagree: the sum of the terms")


def test_the_terminal_text_needs_no_matplotlib(tmp_path: Path) -> None:
    """Without the ``report`` extra the command still prints its text; only figures need it."""
    hide = "import sys; sys.modules['matplotlib'] = None; from crossent.cli import main; "
    runs = [
        subprocess.Popen(
            [sys.executable, "-c", hide + f"sys.exit(main({arguments!r}))"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for arguments in (["explain"], ["explain", "--plots", str(tmp_path / "plots")])
    ]
    (text, text_error), (plots, plots_error) = (run.communicate(timeout=300) for run in runs)
    assert runs[0].returncode == 0, text_error
    assert "H(p, q) = 0.356675 nats = 0.514573 bits; perplexity e^H = 1.428571" in text
    assert runs[1].returncode == 2
    assert "H(p, q)" not in plots  # refused before the text is printed
    assert "needs the 'report' extra (matplotlib missing)" in plots_error
