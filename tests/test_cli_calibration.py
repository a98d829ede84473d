"""``crossent eval --calibration`` as a user runs it (subprocesses on a tiny saved Llama): the JSON,
the table, the report's figures, ``--per-token`` beside it, the refused combination, and
``torchrun`` with 2 processes on gloo equal to one process."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from tiny_lm import bpe, log_probs, save_llama

TEXTS = [
    "Every effort moves you. The cat sat on the mat, and the dog looked at the cat.\n" * 3,
    "Cross-entropy measures how surprised a model is by the next token: café, naïve.\n" * 2,
]


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("calibration")
    tokenizer = bpe(TEXTS)
    for index, text in enumerate(TEXTS):
        (root / f"doc{index}.txt").write_text(text, encoding="utf-8")
    return save_llama(root / "model", tokenizer, seed=0, head_scale=3.0)


def _run(*command: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # two processes share this machine's cores
    return subprocess.run(command, capture_output=True, text=True, check=False, env=env)


def _eval(folder: Path, *args: str) -> subprocess.CompletedProcess[str]:
    data = [f"--data={folder.parent / f'doc{i}.txt'}" for i in range(len(TEXTS))]
    return _run(sys.executable, "-m", "crossent", "eval", "--model", str(folder), *data, *args)


def test_the_json_table_and_report_carry_the_calibration(folder: Path, tmp_path: Path) -> None:
    out, report, rows = tmp_path / "r.json", tmp_path / "r.html", tmp_path / "t.jsonl"
    done = _eval(
        folder, "--window", "128", "--calibration", "--json", str(out), "--report", str(report),
        "--per-token", str(rows),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    record = json.loads(out.read_text(encoding="utf-8"))["calibration"]
    assert {"ece", "ece_equal_mass", "mean_confidence", "accuracy", "mean_entropy_nats",
            "nats_per_token", "verdict", "reliability", "reliability_equal_mass",
            "temperature"} <= set(record)  # fmt: skip
    assert record["tokens"] == len(rows.read_text(encoding="utf-8").splitlines())
    # The oracle: each document is one window, BOS + its text; the loss at T = 1 and T = 2.
    tokenizer = bpe(TEXTS)
    logits, targets = [], []
    for text in TEXTS:
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        logits.append(log_probs(folder, ids, tokenizer.bos_token_id))
        targets.append(torch.tensor(ids))
    z, target = torch.cat(logits), torch.cat(targets)
    curve = {
        round(p["temperature"], 6): p["nats_per_token"] for p in record["temperature"]["curve"]
    }
    for temperature in (1.0, 2.0):
        expected = float(F.cross_entropy(z / temperature, target))
        assert curve[temperature] == pytest.approx(expected, rel=1e-5)
    probs = z.softmax(dim=1)
    assert record["mean_confidence"] == pytest.approx(
        float(probs.max(dim=1).values.mean()), rel=1e-5
    )
    entropy = float(-(probs * z.log_softmax(dim=1)).sum(dim=1).mean())
    assert record["mean_entropy_nats"] == pytest.approx(entropy, rel=1e-5)
    assert "calibration of the top-1 prediction: ECE " in done.stdout
    assert "temperature: T* " in done.stdout
    page = report.read_text(encoding="utf-8")
    assert '<svg class="reliability"' in page
    assert '<svg class="temperature"' in page
    assert page.count("<rect ") >= len(record["reliability"])


def test_without_the_flag_there_is_no_calibration(folder: Path, tmp_path: Path) -> None:
    done = _eval(folder, "--window", "128", "--json", str(tmp_path / "r.json"))
    assert done.returncode == 0, done.stderr
    assert "calibration" not in json.loads((tmp_path / "r.json").read_text(encoding="utf-8"))
    assert "ECE" not in done.stdout


def test_hf_stride_is_refused_in_one_line(folder: Path) -> None:
    done = _eval(folder, "--calibration", "--convention", "hf-stride")
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1
    assert "--calibration does not apply to --convention hf-stride" in done.stderr


def test_the_help_says_it_is_off_by_default() -> None:
    done = _run(sys.executable, "-m", "crossent", "eval", "--help")
    assert done.returncode == 0
    help_text = " ".join(done.stdout.split())
    start = help_text.index("--calibration also")
    assert help_text[start:].split("--", 2)[1].rstrip().endswith("(default: off)")


@pytest.mark.slow
def test_two_ranks_give_the_single_process_calibration(folder: Path, tmp_path: Path) -> None:
    args = ["--window", "16", "--stride", "12", "--batch-size", "2", "--calibration"]
    data = [f"--data={folder.parent / f'doc{i}.txt'}" for i in range(len(TEXTS))]
    one = _eval(folder, *args, "--json", str(tmp_path / "one.json"))
    assert one.returncode == 0, one.stderr
    two = _run(
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
        "-m", "crossent", "eval", "--model", str(folder), *data, *args,
        "--json", str(tmp_path / "two.json"),
    )  # fmt: skip
    assert two.returncode == 0, two.stderr
    single = json.loads((tmp_path / "one.json").read_text(encoding="utf-8"))["calibration"]
    sharded = json.loads((tmp_path / "two.json").read_text(encoding="utf-8"))["calibration"]
    _assert_close(single, sharded)


def _assert_close(mine: object, theirs: object) -> None:
    """Equal, floats to float64 rounding (the sums were added in another order)."""
    if isinstance(mine, dict):
        assert isinstance(theirs, dict)
        assert mine.keys() == theirs.keys()
        for key in mine:
            _assert_close(mine[key], theirs[key])
    elif isinstance(mine, list):
        assert isinstance(theirs, list)
        assert len(mine) == len(theirs)
        for a, b in zip(mine, theirs, strict=True):
            _assert_close(a, b)
    elif isinstance(mine, float) and not math.isinf(mine):
        assert theirs == pytest.approx(mine, rel=1e-9, abs=1e-12)
    else:
        assert mine == theirs
