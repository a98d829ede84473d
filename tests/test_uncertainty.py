"""Standard errors per token and the bootstrap over documents (issue 13, "how sure a number is").

The oracle: a tiny random Llama's own transformers logits in float64, the standard error
computed here with numpy's sample standard deviation (not from sums of squares), the delta
method written out, and a seeded bootstrap written here from its documented procedure.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from crossent.cli import main
from crossent.data import Document
from crossent.evaluation import EvaluationResult, evaluate
from crossent.metrics import NLLMeter
from crossent.models import load_model
from crossent.uncertainty import bootstrap_documents, mean_standard_error
from report.parsing import ParsedPage
from tiny_lm import bpe, save_llama, token_nats

TEXTS = [
    "The cat sat on the mat, and the dog looked at the cat.\n",
    "Every effort moves you. Cross-entropy measures surprise.\n",
    "A short one, caf\u00e9.\n",
    "The dog sat on the cat, and the mat looked at the dog. Every effort moves the cat.\n",
]
LN2 = math.log(2.0)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    folder = tmp_path_factory.mktemp("tiny")
    tokenizer = bpe([" ".join(TEXTS) * 3])
    model_folder = save_llama(folder / "m", tokenizer, seed=0)
    nats = [token_nats(model_folder, tokenizer, text).numpy() for text in TEXTS]
    files = []
    for index, text in enumerate(TEXTS):
        path = folder / f"doc{index}.txt"
        path.write_text(text, encoding="utf-8")
        files.append(path)
    return {"folder": model_folder, "nats": nats, "files": files, "dir": folder}


def _evaluate(tiny: dict[str, object]) -> EvaluationResult:
    folder = tiny["folder"]
    assert isinstance(folder, Path)
    model = load_model(folder, device="cpu")
    return evaluate(model, [Document(f"d{i}", text) for i, text in enumerate(TEXTS)])


def _oracle_errors(nats: np.ndarray, num_bytes: int) -> dict[str, float]:
    """The standard errors by the textbook: s / sqrt(n), then the delta method."""
    n = nats.shape[0]
    mean = nats.mean()
    se = nats.std(ddof=1) / math.sqrt(n)
    return {
        "nats_per_token_se": se,
        "bits_per_token_se": se / LN2,
        "perplexity_se": math.exp(mean) * se,  # d e^m / dm = e^m
        "bits_per_byte_se": n * se / (LN2 * num_bytes),  # d (n m / (ln2 B)) / dm
    }


def test_standard_errors_per_token_against_float64_logits(tiny: dict[str, object]) -> None:
    result = _evaluate(tiny)
    nats = tiny["nats"]
    assert isinstance(nats, list)
    every = np.concatenate(nats)
    assert every.std() > 0.5  # losses that vary, so a wrong formula shows
    total_bytes = sum(len(text.encode()) for text in TEXTS)
    expected = _oracle_errors(every, total_bytes)
    for key, value in expected.items():
        assert getattr(result.totals, key) == pytest.approx(value, rel=1e-4), key
    for document, own, text in zip(result.documents, nats, TEXTS, strict=True):
        metrics = document.result()
        for key, value in _oracle_errors(own, len(text.encode())).items():
            assert getattr(metrics, key) == pytest.approx(value, rel=1e-4), key


def _bootstrap_here(
    nll: np.ndarray, tokens: np.ndarray, num_bytes: np.ndarray, resamples: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """The documented bootstrap, written again: one integers() draw per resample, in order."""
    rng = np.random.default_rng(seed)
    per_token, per_byte = [], []
    for _ in range(resamples):
        pick = rng.integers(0, len(nll), size=len(nll))
        per_token.append(nll[pick].sum() / tokens[pick].sum())
        per_byte.append(nll[pick].sum() / num_bytes[pick].sum() / LN2)
    return np.array(per_token), np.array(per_byte)


def _document_sums(tiny: dict[str, object]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each text's summed nats (from the float64 oracle), tokens and bytes."""
    nats = tiny["nats"]
    assert isinstance(nats, list)
    nll = np.array([own.sum() for own in nats])
    tokens = np.array([len(own) for own in nats], dtype=np.float64)
    num_bytes = np.array([len(text.encode()) for text in TEXTS], dtype=np.float64)
    return nll, tokens, num_bytes


def test_bootstrap_over_documents_against_one_written_here(tiny: dict[str, object]) -> None:
    result = _evaluate(tiny)
    boot = result.bootstrap
    assert boot is not None
    assert (boot.documents, boot.resamples, boot.seed) == (len(TEXTS), 1000, 0)
    nll, tokens, num_bytes = _document_sums(tiny)
    per_token, per_byte = _bootstrap_here(nll, tokens, num_bytes, 1000, 0)
    assert boot.nats_per_token.standard_error == pytest.approx(per_token.std(ddof=1), rel=1e-4)
    assert boot.bits_per_byte is not None
    assert boot.bits_per_byte.standard_error == pytest.approx(per_byte.std(ddof=1), rel=1e-4)
    low, high = np.percentile(per_byte, [2.5, 97.5])
    assert (boot.bits_per_byte.low, boot.bits_per_byte.high) == pytest.approx((low, high), 1e-4)
    assert boot.perplexity.standard_error == pytest.approx(np.exp(per_token).std(ddof=1), 1e-4)
    # another seed draws other resamples: the seed is what makes it reproducible
    other = bootstrap_documents(nll, tokens.astype(int), num_bytes.astype(int), seed=1)
    assert other is not None
    assert other.bits_per_byte is not None
    assert other.bits_per_byte.standard_error != boot.bits_per_byte.standard_error
    # a lone document has nothing to resample
    assert bootstrap_documents([1.0], [2], [3]) is None


def test_meter_squares_merge_and_stay_unknown_when_not_given() -> None:
    losses = torch.tensor([0.5, 2.0, 4.0, 0.25], dtype=torch.float32)
    whole = NLLMeter()
    whole.update(losses, 4, bytes=10)
    parts = NLLMeter()
    parts.update(losses[:1].item(), 1, bytes=3)  # one token: its square is known
    parts.update(losses[1:], 3, bytes=7)
    assert parts.nll_squared == pytest.approx(whole.nll_squared, rel=1e-12)
    expected = losses.double().std().item() / 2.0
    assert whole.result().nats_per_token_se == pytest.approx(expected, rel=1e-12)
    sums_only = NLLMeter()
    sums_only.update(6.75, 4, bytes=10)  # a sum over four tokens says nothing of their spread
    assert sums_only.result().nats_per_token_se is None
    assert NLLMeter().merge(whole).merge(sums_only).result().bits_per_byte_se is None
    assert mean_standard_error(3.0, 9.0, 1) is None  # one token: no spread to measure


def _command_inputs(tiny: dict[str, object]) -> tuple[object, Path, list[str]]:
    """The tiny model's folder, the output folder and the ``--data`` arguments of the texts."""
    files, out = tiny["files"], tiny["dir"]
    assert isinstance(files, list)
    assert isinstance(out, Path)
    return tiny["folder"], out, [arg for path in files for arg in ("--data", str(path))]


def test_eval_json_table_and_page_show_the_errors(
    tiny: dict[str, object], capsys: pytest.CaptureFixture[str]
) -> None:
    folder, out, data = _command_inputs(tiny)
    code = main(
        ["eval", "--model", str(folder), *data, "--json", str(out / "e.json"), "--report",
         str(out / "e.html"), "--no-progress"]
    )  # fmt: skip
    assert code == 0
    printed = capsys.readouterr().out
    record = json.loads((out / "e.json").read_text(encoding="utf-8"))
    totals = record["totals"]
    nats = tiny["nats"]
    assert isinstance(nats, list)
    expected = _oracle_errors(np.concatenate(nats), sum(len(t.encode()) for t in TEXTS))
    assert totals["bits_per_byte_se"] == pytest.approx(expected["bits_per_byte_se"], rel=1e-4)
    boot = record["uncertainty"]["documents"]
    assert (boot["method"], boot["resamples"], boot["seed"]) == (
        "bootstrap over documents", 1000, 0,
    )  # fmt: skip
    total_row = next(line for line in printed.splitlines() if line.startswith("total"))
    shown = f"{totals['bits_per_byte']:.4f} \u00b1 {totals['bits_per_byte_se']:.4f}"
    assert shown in total_row
    assert f"\u00b1 {boot['bits_per_byte']['standard_error']:.4f} bits/byte" in printed
    assert "seed 0" in printed
    page = ParsedPage((out / "e.html").read_text(encoding="utf-8"))
    rows = {row[0]: row[1:] for row in page.rows["summary"]}
    assert rows["\u00b1 bits/byte (standard error over tokens)"] == [
        f"{totals['bits_per_byte_se']:.4f}"
    ]
    assert rows["\u00b1 bits/byte over documents (bootstrap)"] == [
        f"{boot['bits_per_byte']['standard_error']:.4f}"
    ]


def test_eval_bootstrap_resamples_and_seed_from_the_command_line(
    tiny: dict[str, object], capsys: pytest.CaptureFixture[str]
) -> None:
    folder, out, data = _command_inputs(tiny)
    base = ["eval", "--model", str(folder), *data, "--no-progress"]
    assert (
        main([*base, "--bootstrap", "200", "--bootstrap-seed", "7", "--json", str(out / "b.json")])
        == 0
    )
    printed = capsys.readouterr().out
    boot = json.loads((out / "b.json").read_text(encoding="utf-8"))["uncertainty"]["documents"]
    assert (boot["resamples"], boot["seed"]) == (200, 7)
    nll, tokens, num_bytes = _document_sums(tiny)
    _, per_byte = _bootstrap_here(nll, tokens, num_bytes, 200, 7)
    assert boot["bits_per_byte"]["standard_error"] == pytest.approx(per_byte.std(ddof=1), rel=1e-4)
    assert "200 resamples, seed 7" in printed
    # 0 leaves the bootstrap out of the JSON and the table
    assert main([*base, "--bootstrap", "0", "--json", str(out / "none.json")]) == 0
    assert "bootstrap" not in capsys.readouterr().out
    record = json.loads((out / "none.json").read_text(encoding="utf-8"))
    assert record["uncertainty"]["documents"] is None


@pytest.mark.parametrize("value", ["1", "-3", "many"])
def test_eval_refuses_a_bootstrap_it_cannot_draw(
    value: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["eval", "--bootstrap", value])
    assert exit_info.value.code == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1
    assert "--bootstrap" in error[0]
    assert value in error[0]
