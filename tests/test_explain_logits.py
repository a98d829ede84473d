"""``crossent explain --logits``: the logits column and the step ``logsumexp(z) - z[target]``,
read back from the terminal and the JSON and checked against PyTorch in float64; and the text
``crossent explain`` prints never names the teaching texts by number (issue 11, items 16, 10)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from crossent.cli import main
from crossent.models import HFCausalLM

LOGITS = [1.2, 2.5, 0.5]
LABELS = ["dog", "cat", "fish"]
STEP = re.compile(
    r"^H\(p, q\) = logsumexp\(z\) - (?P<what>\S+(?: p_i z_i)?) = (?P<lse>-?[\d.]+) - "
    r"(?P<target>-?[\d.]+) = (?P<loss>-?[\d.]+) nats$",
    re.MULTILINE,
)


def _table_column(printed: str, header: str) -> list[str]:
    """The cells under ``header`` of the first table, one per label, in order."""
    lines = printed.splitlines()
    top = next(index for index, line in enumerate(lines) if line.startswith("label "))
    start = lines[top].index(header)
    return [lines[top + 2 + row][start:].split()[0] for row in range(len(LABELS))]


def _explain(arguments: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    assert main(["explain", *arguments]) == 0
    return capsys.readouterr().out


def test_one_hot_target_logsumexp_minus_the_target_logit(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out, page = tmp_path / "cat.json", tmp_path / "cat.html"
    printed = _explain(
        ["--logits", ",".join(map(str, LOGITS)), "--labels", ",".join(LABELS), "--target",
         "cat", "--json", str(out), "--html", str(page)],
        capsys,
    )  # fmt: skip
    assert [float(cell) for cell in _table_column(printed, "z (logit)")] == LOGITS
    z = torch.tensor([LOGITS], dtype=torch.float64)
    logsumexp = torch.logsumexp(z, dim=-1).item()
    loss = F.cross_entropy(z, torch.tensor([1])).item()
    step = STEP.search(printed)
    assert step is not None, printed
    assert step["what"] == "z[cat]"
    assert float(step["lse"]) == pytest.approx(logsumexp, abs=5e-7)
    assert float(step["target"]) == 2.5
    assert float(step["loss"]) == pytest.approx(loss, abs=5e-7)
    assert float(step["lse"]) - float(step["target"]) == pytest.approx(
        float(step["loss"]), abs=2e-6
    )
    record = json.loads(out.read_text())
    assert record["logits"] == LOGITS
    assert record["logsumexp"] == pytest.approx(logsumexp, rel=1e-14)
    assert record["target_logit"] == 2.5
    assert record["logsumexp"] - record["target_logit"] == pytest.approx(loss, rel=1e-14)
    html = page.read_text(encoding="utf-8")
    shown = dict(re.findall(r"data-metric='(logsumexp|target_logit)'>([^<]+)<", html))
    assert float(shown["logsumexp"]) == pytest.approx(logsumexp, abs=5e-7)
    assert float(shown["target_logit"]) == 2.5
    logits = re.findall(r'data-metric="logit"[^>]*>([^<]+)<', html)
    assert [float(value) for value in logits] == LOGITS


def test_smoothed_soft_target_logsumexp_minus_the_mean_logit(
    capsys: pytest.CaptureFixture[str],
) -> None:
    p, eps = [0.1, 0.8, 0.1], 0.1
    printed = _explain(
        ["--logits", ",".join(map(str, LOGITS)), "--p", ",".join(map(str, p)),
         "--label-smoothing", str(eps)],
        capsys,
    )  # fmt: skip
    z = torch.tensor([LOGITS], dtype=torch.float64)
    target = torch.tensor([p], dtype=torch.float64)
    smoothed = (1 - eps) * target + eps / len(LOGITS)
    step = STEP.search(printed)
    assert step is not None, printed
    assert step["what"] == "sum_i p_i z_i"
    assert float(step["lse"]) == pytest.approx(torch.logsumexp(z, -1).item(), abs=5e-7)
    assert float(step["target"]) == pytest.approx((smoothed * z).sum().item(), abs=5e-7)
    expected = F.cross_entropy(z, target, label_smoothing=eps).item()
    assert float(step["loss"]) == pytest.approx(expected, abs=5e-7)


def test_probabilities_have_no_logit_step(capsys: pytest.CaptureFixture[str]) -> None:
    printed = _explain(["--probs", "0.2,0.7,0.1", "--target", "1"], capsys)
    assert "z (logit)" not in printed
    assert STEP.search(printed) is None


# Item 10: the example is named for what it is, not by the number of a teaching text.


@pytest.mark.parametrize(
    "arguments",
    [[], ["--stability"], ["--logits", "1,2,3", "--target", "0"], ["--p", "0.5,0.5", "--probs",
     "0.3,0.7"]],
    ids=["no-input", "stability", "logits", "soft"],
)  # fmt: skip
def test_output_names_no_seed(arguments: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    printed = _explain(arguments, capsys)
    assert "seed 0" not in printed.lower()
    if not arguments:
        assert "No input given: the three animals" in printed
        assert "cat    1           0.7            -0.356675  0.356675" in printed


def test_text_output_and_help_name_no_seed(
    smollm2: HFCausalLM, capsys: pytest.CaptureFixture[str]
) -> None:
    del smollm2  # loaded once for the session; main() loads the same cached model
    printed = _explain(["Every effort moves you"], capsys)
    assert "neg_avg_log_probas" in printed
    assert "seed 0" not in printed.lower()
    done = subprocess.run(
        [sys.executable, "-m", "crossent", "explain", "--help"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert done.returncode == 0
    assert "three animals" in done.stdout
    assert "seed 0" not in done.stdout.lower()
