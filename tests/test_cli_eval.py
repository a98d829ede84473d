"""``crossent eval`` as a user runs it: a real subprocess on the real embedded model."""

from __future__ import annotations

import csv
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from crossent.models import HFCausalLM

TEXT = "Every effort moves you. The cat sat on the mat.\nA second line, with more words in it.\n"


def _crossent(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "crossent", *args], capture_output=True, text=True, check=False
    )


def test_eval_writes_the_documented_json(smollm2: HFCausalLM, tmp_path: Path) -> None:
    text_file = tmp_path / "text.txt"
    text_file.write_text(TEXT, encoding="utf-8")
    out = tmp_path / "result.json"
    done = _crossent("eval", "--data", str(text_file), "--window", "128", "--json", str(out))
    assert done.returncode == 0, done.stderr
    assert f"\n{text_file}  " in done.stdout  # a lone document's row is named by it
    result = json.loads(out.read_text(encoding="utf-8"))
    assert set(result) == {
        "model", "convention", "window", "stride", "prefix", "provenance", "scoring", "documents",
        "totals", "uncertainty",
    }  # fmt: skip
    assert (result["window"], result["stride"], result["prefix"]) == (128, 128, "bos")
    (document,) = result["documents"]
    metrics = {
        "tokens", "bytes", "words", "nll_nats", "nats_per_token", "bits_per_token",
        "perplexity", "bits_per_byte", "byte_perplexity", "word_perplexity", "accuracy",
        "nats_per_token_se", "bits_per_token_se", "perplexity_se", "bits_per_byte_se",
    }  # fmt: skip
    assert set(document) == {
        "name", "unscored_bytes", "unscored_words", "truncated", "tokens_scored", "tokens_unscored",
    } | metrics  # fmt: skip
    assert set(result["totals"]) == metrics
    convention = result["convention"]
    assert (convention["name"], convention["window"], convention["prefix"]) == (
        "lm-eval",
        128,
        "bos",
    )
    tokens = result["totals"]["tokens"]
    assert (convention["tokens_scored"], convention["tokens_unscored"]) == (tokens, 0)

    # The oracle: transformers' own logits for BOS + the text, one window.
    ids = smollm2.tokenizer.encode(TEXT)
    inputs = torch.tensor([[smollm2.tokenizer.bos_token_id, *ids[:-1]]])
    with torch.no_grad():
        logits = smollm2.model(inputs).logits[0].double()
    nll = F.cross_entropy(logits, torch.tensor(ids), reduction="sum").item()
    assert document["tokens"] == len(ids)
    assert document["nll_nats"] == pytest.approx(nll, rel=1e-5)
    assert document["bytes"] == len(TEXT.encode("utf-8"))
    assert result["totals"]["bits_per_byte"] == pytest.approx(
        nll / len(TEXT.encode("utf-8")) / torch.log(torch.tensor(2.0)).item(), rel=1e-5
    )
    # The standard error per token: the sample deviation of the float64 losses over sqrt(n).
    losses = F.cross_entropy(logits, torch.tensor(ids), reduction="none")
    se = losses.std().item() / len(ids) ** 0.5
    assert result["totals"]["nats_per_token_se"] == pytest.approx(se, rel=1e-4)
    assert result["totals"]["perplexity_se"] == pytest.approx(
        losses.mean().exp().item() * se, rel=1e-4
    )
    assert result["uncertainty"]["documents"] is None  # one document: nothing to resample


@pytest.mark.parametrize(
    ("args", "complaint"),
    [
        (("--data", "/nonexistent/text.txt"), "/nonexistent/text.txt"),
        (("--window", "8", "--stride", "9"), "stride 9 is outside [1, 8]"),
    ],
)
def test_bad_input_is_one_line_and_exit_code_2(args: tuple[str, ...], complaint: str) -> None:
    done = _crossent("eval", *args)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert complaint in lines[0]


def test_json_output_never_overwrites_an_input(tmp_path: Path) -> None:
    text_file = tmp_path / "text.txt"
    text_file.write_text(TEXT, encoding="utf-8")
    done = _crossent("eval", "--data", str(text_file), "--json", str(text_file))
    assert done.returncode == 2
    assert "would be overwritten" in done.stderr
    assert text_file.read_text(encoding="utf-8") == TEXT


@pytest.fixture
def text_file(tmp_path: Path) -> Path:
    path = tmp_path / "text.txt"
    path.write_text(TEXT, encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("args", "complaint"),
    [
        (("--per-token", "{tmp}/tokens.txt"), "must end in .jsonl or .csv"),
        (("--report", "{tmp}/report.pdf"), "must end in .html"),
        (("--json", "{tmp}/text.txt/out.json"), "text.txt is a file, not a folder"),
        (("--json", "{tmp}/same.jsonl", "--per-token", "{tmp}/same.jsonl"), "would be overwritten"),
        (("--data", "{tmp}/empty.txt"), "empty.txt is empty"),
        (("--data", "{tmp}/folder"), "has no files to read"),
        (("--data", "{tmp}/bad.txt"), "is not valid UTF-8: byte 0xff at offset 2"),
        (("--data", "{tmp}/lines.jsonl", "--field", "body"), "has no field 'body'"),
        (("--model", "{tmp}/folder"), "is not a model"),
        (("--window", "10000"), "window 10000 is outside [1, 8192]"),
    ],
)
def test_more_bad_input(
    tmp_path: Path, text_file: Path, args: tuple[str, ...], complaint: str
) -> None:
    (tmp_path / "empty.txt").write_bytes(b"")
    (tmp_path / "folder").mkdir()
    (tmp_path / "bad.txt").write_bytes(b"ok\xff")
    (tmp_path / "lines.jsonl").write_text('{"text": "hi"}\n', encoding="utf-8")
    args = tuple(arg.format(tmp=tmp_path) for arg in args)
    if "--data" not in args:
        args = ("--data", str(text_file), *args)
    done = _crossent("eval", *args)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert complaint in lines[0]
    assert not list(tmp_path.glob("*.json")) + list(tmp_path.glob("*.tmp"))


def test_per_token_csv_and_report(smollm2: HFCausalLM, tmp_path: Path, text_file: Path) -> None:
    rows_file, report = tmp_path / "tokens.csv", tmp_path / "report.html"
    done = _crossent(
        "eval", "--data", str(text_file), "--window", "16", "--per-token", str(rows_file),
        "--report", str(report),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    with rows_file.open(encoding="utf-8", newline="") as file:
        rows = list(csv.DictReader(file))
    ids = smollm2.tokenizer.encode(TEXT)
    assert [int(row["token_id"]) for row in rows] == ids
    assert [int(row["position"]) for row in rows] == list(range(len(ids)))
    assert "".join(row["text"] for row in rows) == TEXT
    assert {row["document"] for row in rows} == {str(text_file)}
    # the summed per-token nats is the document's NLL the table reports
    nats = sum(float(row["nats"]) for row in rows)
    table_line = next(line for line in done.stdout.splitlines() if line.startswith(str(text_file)))
    assert f"{nats / len(ids):.4f}" == table_line.split()[2]
    for row in rows:
        probs = [float(row[f"top{k}_prob"]) for k in range(1, 6)]
        assert probs == sorted(probs, reverse=True)
        assert (int(row["rank"]) == 1) == (int(row["top1_id"]) == int(row["token_id"]))
    assert report.read_text(encoding="utf-8").lstrip().lower().startswith("<!doctype html>")
    assert (report.stat().st_mode & 0o777) != 0o600  # not mkstemp's private mode


def test_ctrl_c_stops_cleanly_and_writes_nothing(smollm2: HFCausalLM, tmp_path: Path) -> None:
    del smollm2  # the cache is warm, so the run reaches scoring quickly
    out = tmp_path / "out.json"
    process = subprocess.Popen(
        [sys.executable, "-m", "crossent", "eval", "--window", "256", "--progress", "--json",
         str(out)],
        stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        # As at a terminal: a shell's background job would pass SIGINT on ignored.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )  # fmt: skip
    assert process.stderr is not None
    seen = ""
    while "scoring" not in seen:  # the bar appears once scoring has started
        char = process.stderr.read(1)
        assert char, "the process ended before scoring"
        seen += char
    process.send_signal(signal.SIGINT)
    _, rest = process.communicate(timeout=120)
    assert process.returncode == 130
    assert "crossent: interrupted" in rest
    assert "Traceback" not in rest
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("delay", [0.1 * tenth for tenth in range(2, 13)])
def test_ctrl_c_while_starting_is_one_line(delay: float) -> None:
    # Before the model loads: while Python, the parser or the library are still being imported.
    # Each moment of the imports has its own way to lose the interrupt (an import guard of
    # NumPy's swallowing it, a half-imported module failing later, CPython ending the process
    # by SIGINT), so the delays sweep the first second and more.
    process = subprocess.Popen(
        [sys.executable, "-m", "crossent", "eval", "--max-chars", "200"],
        stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )  # fmt: skip
    time.sleep(delay)
    process.send_signal(signal.SIGINT)
    _, errors = process.communicate(timeout=120)
    assert process.returncode == 130, errors
    assert errors.strip().splitlines() == ["crossent: interrupted"]
