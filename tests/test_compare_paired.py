"""``crossent compare``'s paired difference in bits per byte, its own windows, llama.cpp's KL
statistics and more than two models (issue 13, "how sure a number is").

Tiny random Llamas saved to folders; the oracle is each model's own transformers logits in
float64 (one window holds every document), with every statistic computed here in numpy from
its definition: the paired standard error from the sample standard deviation, the ratio
estimator over byte blocks and documents, llama.cpp's percentile rule written out.
"""

from __future__ import annotations

import json
import math
from itertools import pairwise
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import PreTrainedTokenizerFast

from crossent.cli import main
from crossent.comparison import compare, compare_models
from crossent.data import Document
from crossent.models import load_model
from crossent.report.comparison_page import render_comparison_report
from crossent.report.table import format_comparison
from report.parsing import ParsedPage
from tiny_lm import bpe, log_probs, save_llama, token_nats

LN2 = math.log(2.0)
Z95 = 1.959963984540054
TEXTS = [
    "The cat sat on the mat, and the dog looked at the cat.\n",
    "Every effort moves you. Cross-entropy measures surprise in nats.\n",
    "A dog, a cat and a mat: the dog sat on the cat.\n",
    "Models that share a tokenizer are compared token by token.\n",
]  # ASCII, so each token's bytes are its decoded text's


class Tiny:
    """The saved models and their tokenizers."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.shared = bpe([" ".join(TEXTS) * 3])
        self.other = bpe([" ".join(reversed(TEXTS)) * 2], vocab_size=280)
        self.a = save_llama(folder / "a", self.shared, seed=0)
        self.b = save_llama(folder / "b", self.shared, seed=1, head_scale=8.0)
        self.c = save_llama(folder / "c", self.shared, seed=2, context=64)
        self.d = save_llama(folder / "d", self.other, seed=3)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Tiny:
    return Tiny(tmp_path_factory.mktemp("paired"))


def _documents(texts: list[str]) -> list[Document]:
    return [Document(f"d{index}", text) for index, text in enumerate(texts)]


def _ratio_error(change: np.ndarray, sizes: np.ndarray) -> tuple[float, float]:
    """The ratio estimator of sum(change) / sum(sizes) and its standard error, in bits."""
    ratio = change.sum() / sizes.sum()
    residual = change - ratio * sizes
    count = len(change)
    se = math.sqrt(count / (count - 1) * (residual**2).sum()) / sizes.sum()
    return ratio / LN2, se / LN2


def test_paired_over_tokens_against_float64(tiny: Tiny) -> None:
    result = compare(
        load_model(tiny.a, device="cpu"), load_model(tiny.b, device="cpu"), _documents(TEXTS)
    )
    change = np.concatenate(
        [
            (token_nats(tiny.b, tiny.shared, t) - token_nats(tiny.a, tiny.shared, t)).numpy()
            for t in TEXTS
        ]
    )
    total_bytes = sum(len(text.encode()) for text in TEXTS)
    expected = change.sum() / (LN2 * total_bytes)
    se = math.sqrt(len(change)) * change.std(ddof=1) / (LN2 * total_bytes)
    difference = result.difference
    assert difference is not None
    assert (difference.paired_over, difference.units) == ("tokens", len(change))
    assert difference.bits_per_byte == pytest.approx(expected, rel=1e-4)
    assert difference.standard_error == pytest.approx(se, rel=1e-4)
    assert difference.low == pytest.approx(expected - Z95 * se, rel=1e-4, abs=1e-6)
    assert difference.high == pytest.approx(expected + Z95 * se, rel=1e-4, abs=1e-6)
    # the headline difference is the difference of the two headline numbers
    assert result.a.totals.bits_per_byte is not None
    assert result.b.totals.bits_per_byte is not None
    headline = result.b.totals.bits_per_byte - result.a.totals.bits_per_byte
    assert difference.bits_per_byte == pytest.approx(headline, rel=1e-9)
    excludes = abs(expected) > Z95 * se
    assert difference.distinguishable == excludes
    assert ("not noise" in difference.sentence()) == excludes


def _llama_percentile(values: np.ndarray, fraction: float) -> float:
    """llama.cpp's percentile: linear between the two sorted values around fraction (n - 1)."""
    ordered = np.sort(values)
    where = fraction * (len(ordered) - 1)
    low = int(where)
    high = min(low + 1, len(ordered) - 1)
    return float((1 - (where - low)) * ordered[low] + (where - low) * ordered[high])


def test_kl_statistics_against_float64_logits(tiny: Tiny) -> None:
    result = compare(
        load_model(tiny.a, device="cpu"), load_model(tiny.b, device="cpu"), _documents(TEXTS)
    )
    kl_parts, a_parts, b_parts, same = [], [], [], []
    bos = tiny.shared.bos_token_id
    for text in TEXTS:
        ids = tiny.shared(text, add_special_tokens=False)["input_ids"]
        log_a, log_b = log_probs(tiny.a, ids, bos), log_probs(tiny.b, ids, bos)
        targets = torch.tensor(ids)[:, None]
        kl_parts.append((log_a.exp() * (log_a - log_b)).sum(dim=-1).numpy())
        a_parts.append(-log_a.gather(1, targets)[:, 0].numpy())
        b_parts.append(-log_b.gather(1, targets)[:, 0].numpy())
        same.append((log_a.argmax(dim=-1) == log_b.argmax(dim=-1)).numpy())
    kl, nats_a, nats_b = (np.concatenate(p) for p in (kl_parts, a_parts, b_parts))
    agree = np.concatenate(same).mean()
    n = len(kl)
    summary = result.kl
    assert summary is not None
    assert summary.tokens == n
    assert summary.mean == pytest.approx(kl.mean(), rel=1e-3)
    assert summary.mean_se == pytest.approx(kl.std(ddof=1) / math.sqrt(n), rel=1e-3)
    for key, fraction in (("p50", 0.5), ("p90", 0.9), ("p99", 0.99), ("min", 0.0), ("p5", 0.05)):
        assert summary.percentiles[key] == pytest.approx(
            _llama_percentile(kl, fraction), rel=2e-3, abs=2e-5
        ), key
    assert summary.top1_agreement == pytest.approx(agree, abs=1.5 / n)
    assert summary.top1_agreement_se == pytest.approx(
        math.sqrt(agree * (1 - agree) / (n - 1)), abs=0.02
    )
    delta = np.exp(-nats_b) - np.exp(-nats_a)
    assert summary.delta_p is not None
    assert summary.delta_p.mean == pytest.approx(delta.mean(), abs=1e-5)
    assert summary.delta_p.mean_se == pytest.approx(delta.std(ddof=1) / math.sqrt(n), rel=1e-3)
    rms = math.sqrt((delta**2).mean())
    assert summary.delta_p.rms == pytest.approx(rms, rel=1e-4)
    squared_se = (delta**2).std(ddof=1) / math.sqrt(n)
    assert summary.delta_p.rms_se == pytest.approx(squared_se / (2 * rms), rel=1e-3)
    assert summary.delta_p.percentiles["p75"] == pytest.approx(
        _llama_percentile(delta, 0.75), abs=1e-5
    )
    ppl = summary.perplexity
    assert ppl is not None
    se_a = nats_a.std(ddof=1) / math.sqrt(n)
    se_b = nats_b.std(ddof=1) / math.sqrt(n)
    paired = (nats_b - nats_a).std(ddof=1) / math.sqrt(n)  # the paired error, directly
    assert ppl.ln_ratio == pytest.approx(nats_b.mean() - nats_a.mean(), rel=1e-4)
    assert ppl.ln_ratio_se == pytest.approx(paired, rel=1e-3)
    assert ppl.perplexity_a == pytest.approx(math.exp(nats_a.mean()), rel=1e-4)
    assert ppl.perplexity_b_se == pytest.approx(math.exp(nats_b.mean()) * se_b, rel=1e-3)
    assert ppl.correlation == pytest.approx(np.corrcoef(nats_a, nats_b)[0, 1], rel=1e-3)
    assert ppl.ratio == pytest.approx(math.exp(nats_b.mean() - nats_a.mean()), rel=1e-4)
    assert se_a > 0


def _byte_nats(folder: Path, tokenizer: PreTrainedTokenizerFast, text: str) -> np.ndarray:
    """Each byte's share of its token's loss: the token's nats over its bytes (ASCII text)."""
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    nats = token_nats(folder, tokenizer, text).numpy()
    sizes = [len(str(tokenizer.decode([token])).encode()) for token in ids]
    assert sum(sizes) == len(text.encode())
    return np.concatenate(
        [np.full(size, value / size) for value, size in zip(nats, sizes, strict=True)]
    )


def test_across_tokenizers_paired_over_byte_blocks(tiny: Tiny) -> None:
    model_a, model_d = load_model(tiny.a, device="cpu"), load_model(tiny.d, device="cpu")
    result = compare(model_a, model_d, _documents(TEXTS), block_bytes=16)
    assert not result.shared_tokenizer
    changes, sizes = [], []
    for text in TEXTS:
        on_a = _byte_nats(tiny.a, tiny.shared, text)
        on_d = _byte_nats(tiny.d, tiny.other, text)
        for start in range(0, len(on_a), 16):
            changes.append(on_d[start : start + 16].sum() - on_a[start : start + 16].sum())
            sizes.append(len(on_a[start : start + 16]))
    expected, se = _ratio_error(np.array(changes), np.array(sizes, dtype=np.float64))
    difference = result.difference
    assert difference is not None
    assert (difference.paired_over, difference.block_bytes) == ("byte blocks", 16)
    assert difference.units == len(changes)
    assert difference.bits_per_byte == pytest.approx(expected, rel=1e-4)
    assert difference.standard_error == pytest.approx(se, rel=1e-4)
    assert "blocks of 16 bytes" in difference.sentence()


def test_across_tokenizers_paired_over_twenty_documents(tiny: Tiny) -> None:
    texts = [TEXTS[index % len(TEXTS)][: 20 + index] + "\n" for index in range(20)]
    model_a, model_d = load_model(tiny.a, device="cpu"), load_model(tiny.d, device="cpu")
    result = compare(model_a, model_d, _documents(texts))
    change = np.array(
        [
            token_nats(tiny.d, tiny.other, t).sum().item()
            - token_nats(tiny.a, tiny.shared, t).sum().item()
            for t in texts
        ]
    )
    sizes = np.array([len(text.encode()) for text in texts], dtype=np.float64)
    expected, se = _ratio_error(change, sizes)
    difference = result.difference
    assert difference is not None
    assert (difference.paired_over, difference.units) == ("documents", 20)
    assert difference.bits_per_byte == pytest.approx(expected, rel=1e-4)
    assert difference.standard_error == pytest.approx(se, rel=1e-4)


def test_each_model_reads_in_its_own_window(tiny: Tiny) -> None:
    """A (context 128) against C (context 64): A is no longer cut to C's window."""
    text = " ".join(TEXTS[:2])
    ids = tiny.shared(text, add_special_tokens=False)["input_ids"]
    assert 64 < len(ids) < 128  # one window for A, two for C
    result = compare(
        load_model(tiny.a, device="cpu"), load_model(tiny.c, device="cpu"), _documents([text])
    )
    assert (result.a.window, result.b.window) == (128, 64)
    expected = token_nats(tiny.a, tiny.shared, text).sum().item()  # one window of 128
    assert result.a.totals.nll_nats == pytest.approx(expected, rel=1e-5)
    assert result.token_window == (64, 64)  # the token-by-token pass: both on C's windows


def test_three_models_ranked_on_the_command_line(
    tiny: Tiny, capsys: pytest.CaptureFixture[str]
) -> None:
    for index, text in enumerate(TEXTS):
        (tiny.folder / f"t{index}.txt").write_text(text, encoding="utf-8")
    data = [
        arg for index in range(len(TEXTS)) for arg in ("--data", str(tiny.folder / f"t{index}.txt"))
    ]
    out = tiny.folder / "three"
    code = main(
        ["compare", "--model", str(tiny.a), "--model", str(tiny.b), "--model", str(tiny.d),
         *data, "--json", str(out / "c.json"), "--report", str(out / "c.html"), "--no-progress"]
    )  # fmt: skip
    assert code == 0
    printed = capsys.readouterr().out
    record = json.loads((out / "c.json").read_text(encoding="utf-8"))
    bits = {m["model"]: m["totals"]["bits_per_byte"] for m in record["models"]}
    assert record["ranking"] == sorted(bits, key=bits.__getitem__)
    assert [(p["a"], p["b"]) for p in record["pairs"]] == [
        (str(tiny.a), str(tiny.b)),
        (str(tiny.a), str(tiny.d)),
    ]
    assert record["pairs"][0]["difference"]["paired_over"] == "tokens"
    assert record["pairs"][1]["difference"]["paired_over"] == "byte blocks"
    assert record["pairs"][1]["kl"] is None
    for pair in record["pairs"]:
        assert pair["difference"]["text"] in printed
    lines = printed.split("rank", 1)[1].splitlines()[2:5]
    assert [line.split()[1] for line in lines] == record["ranking"]
    page = ParsedPage((out / "c.html").read_text(encoding="utf-8"))
    ranked = [row[1].split(": ", 1)[1] for row in page.rows["ranking"][1:]]
    assert ranked == record["ranking"]
    assert len(page.rows["kl"]) > 10  # A against B only, with llama.cpp's statistics
    assert sorted(page.heatmaps) == ["m0", "m1", "m2"]


def test_two_models_print_the_difference_and_write_it(
    tiny: Tiny, capsys: pytest.CaptureFixture[str]
) -> None:
    (tiny.folder / "t.txt").write_text("".join(TEXTS), encoding="utf-8")
    out = tiny.folder / "two"
    code = main(
        ["compare", "--model", str(tiny.a), "--model", str(tiny.b), "--data",
         str(tiny.folder / "t.txt"), "--json", str(out / "c.json"), "--report",
         str(out / "c.html"), "--no-progress"]
    )  # fmt: skip
    assert code == 0
    printed = capsys.readouterr().out
    record = json.loads((out / "c.json").read_text(encoding="utf-8"))
    difference = record["difference"]
    assert difference["text"] in printed
    assert difference["bits_per_byte"] == pytest.approx(
        record["b"]["totals"]["bits_per_byte"] - record["a"]["totals"]["bits_per_byte"], rel=1e-9
    )
    assert "ln(PPL(B)/PPL(A)) = " in printed
    assert record["kl"]["perplexity"]["ln_ratio"] == pytest.approx(
        math.log(record["kl"]["perplexity"]["ratio"]), rel=1e-9
    )
    page = (out / "c.html").read_text(encoding="utf-8")
    assert difference["text"].replace("'", "&#x27;") in page


def test_a_lone_model_is_refused_in_the_library() -> None:
    with pytest.raises(ValueError, match="at least two models"):
        compare_models([], [])


def test_across_tokenizers_the_differences_line_up_on_the_same_characters(
    tiny: Tiny, tmp_path: Path
) -> None:
    """Segments where both tokenizations cut the text: each model's whole tokens inside."""
    text = TEXTS[0]
    result = compare(
        load_model(tiny.a, device="cpu"), load_model(tiny.d, device="cpu"), _documents([text])
    )
    cuts = {}
    for key, folder, tokenizer in (("a", tiny.a, tiny.shared), ("d", tiny.d, tiny.other)):
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        sizes = [len(str(tokenizer.decode([token])).encode()) for token in ids]
        ends = np.cumsum([0, *sizes])
        nats = np.concatenate([[0.0], np.cumsum(token_nats(folder, tokenizer, text).numpy())])
        cuts[key] = dict(zip(ends.tolist(), nats.tolist(), strict=True))
    common = sorted(set(cuts["a"]) & set(cuts["d"]))
    assert len(common) > 3  # the two tokenizations differ but share some cuts
    assert len(result.segments) == len(common) - 1
    for segment, (start, end) in zip(result.segments, pairwise(common), strict=True):
        assert (segment.start, segment.bytes) == (start, end - start)
        assert segment.text == text.encode()[start:end].decode()
        assert segment.nats_a == pytest.approx(cuts["a"][end] - cuts["a"][start], abs=1e-4)
        assert segment.nats_b == pytest.approx(cuts["d"][end] - cuts["d"][start], abs=1e-4)
    assert "".join(segment.text for segment in result.segments) == text
    changes = [abs(s.nats_b - s.nats_a) for s in result.segments]
    assert abs(result.largest_segments[0].nats_b - result.largest_segments[0].nats_a) == max(
        changes
    )
    page = ParsedPage(render_comparison_report(result))
    assert len(page.rows["largest-segments"]) == 1 + len(result.largest_segments)
    assert "where they differ most" in format_comparison(result)
