"""``explain_distributions`` and ``explain_text`` at several temperatures, against float64
computations written here: numpy on the toy logits, PyTorch's float64 log-softmax on the logits
transformers computes for the text."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np
import pytest
import torch

from crossent.explain import (
    DistributionExplanation,
    ExplainRequest,
    TextExplanation,
    explain,
    explain_distributions,
    explain_text,
)
from crossent.models import HFCausalLM
from tiny_lm import tiny_lm

TEMPERATURES = [0.25, 0.5, 2.0, 10.0]
ANIMALS = ["dog", "cat", "fish"]


def _oracle(
    logits: list[float], p: list[float], temperature: float
) -> tuple[np.ndarray, float, float]:
    """``q_T``, ``H(p, q_T)`` and ``H(q_T)`` in float64 with numpy; ``p`` the (smoothed) target."""
    z = np.array(logits, dtype=np.float64) / temperature
    shifted = z - z[np.isfinite(z)].max()
    with np.errstate(divide="ignore"):
        log_q = shifted - np.log(np.exp(shifted).sum())
    q = np.exp(log_q)
    weights = np.array(p, dtype=np.float64)
    loss = -float(np.sum(np.where(weights > 0, weights * log_q, 0.0)))
    entropy = -float(np.sum(np.where(q > 0, q * log_q, 0.0)))
    return q, loss, entropy


# (arguments, the logits z the temperature divides, the smoothed target p, target index)
CASES: list[tuple[dict[str, Any], Any, list[float], int | None]] = [
    (dict(q=[0.2, 0.7, 0.1], target="cat"), np.log([0.2, 0.7, 0.1]), [0, 1, 0], 1),
    (dict(logits=[1.2, 2.5, 0.5], target="dog"), [1.2, 2.5, 0.5], [1, 0, 0], 0),
    (dict(logits=[1.2, 2.5, 0.5], p=[0.1, 0.8, 0.1]), [1.2, 2.5, 0.5], [0.1, 0.8, 0.1], None),
    (
        dict(q=[0.2, 0.7, 0.1], target="fish", label_smoothing=0.3),
        np.log([0.2, 0.7, 0.1]),
        [0.1, 0.1, 0.8],
        2,
    ),
    (dict(logits=[30.0, -5.0, 0.0], target="cat"), [30.0, -5.0, 0.0], [0, 1, 0], 1),
]


@pytest.mark.parametrize(("arguments", "z", "p", "index"), CASES)
def test_toy_rows_against_numpy(
    arguments: dict[str, Any], z: list[float], p: list[float], index: int | None
) -> None:
    e = explain_distributions(labels=ANIMALS, temperatures=TEMPERATURES, **arguments)
    assert e.temperatures is not None
    assert [row.temperature for row in e.temperatures.rows] == [0.25, 0.5, 1.0, 2.0, 10.0]
    for row in e.temperatures.rows:
        q, loss, entropy = _oracle(list(z), p, row.temperature)
        assert row.q == pytest.approx(q.tolist(), rel=1e-12, abs=1e-15)
        assert row.nats == pytest.approx(loss, rel=1e-12)
        assert row.bits == pytest.approx(loss / math.log(2), rel=1e-12)
        assert row.perplexity == pytest.approx(math.exp(loss), rel=1e-12)
        assert row.entropy_nats == pytest.approx(entropy, rel=1e-12, abs=1e-15)
        assert row.excess_nats == pytest.approx(loss - entropy, rel=1e-9, abs=1e-12)
        if index is None:
            assert row.target_probability is None
        else:
            assert row.target_probability == pytest.approx(q[index], rel=1e-12)
    assert all(check.agrees for check in (*e.checks, *e.temperatures.checks))


def _row_at_1(e: DistributionExplanation | TextExplanation) -> tuple[float, float | None]:
    assert e.temperatures is not None
    (row,) = (row for row in e.temperatures.rows if row.temperature == 1)
    return row.nats, row.target_probability


def test_temperature_1_is_the_plain_explanation() -> None:
    for arguments, _, _, index in CASES:
        plain = explain_distributions(labels=ANIMALS, **arguments)
        scanned = explain_distributions(labels=ANIMALS, temperatures=[3.0], **arguments)
        assert plain.temperatures is None
        assert dataclasses.replace(scanned, temperatures=None) == plain  # the rest is unchanged
        nats, probability = _row_at_1(scanned)
        assert nats == pytest.approx(plain.nats, rel=1e-14)
        if index is not None:
            assert probability == pytest.approx(plain.q[index], rel=1e-14)


def test_temperatures_are_sorted_and_shown_once() -> None:
    e = explain_distributions([0.2, 0.7, 0.1], target="1", temperatures=[2, 1, 0.5, 2])
    assert e.temperatures is not None
    assert [row.temperature for row in e.temperatures.rows] == [0.5, 1.0, 2.0]


def test_the_limits_against_their_formulas() -> None:
    """T -> 0: one-hot on the argmax and T H -> max z - z[target]; T -> inf: uniform, ln V."""
    z = [1.2, 2.5, 0.5, -3.0]
    e = explain_distributions(logits=z, target="0", temperatures=[1e-3, 1e5])
    assert e.temperatures is not None
    cold, _, hot = e.temperatures.rows
    assert cold.q == pytest.approx([0.0, 1.0, 0.0, 0.0], abs=1e-300)
    assert cold.entropy_nats == pytest.approx(0.0, abs=1e-300)
    assert 1e-3 * cold.nats == pytest.approx(2.5 - 1.2, rel=1e-12)
    assert hot.q == pytest.approx([0.25] * 4, rel=1e-4)
    assert hot.entropy_nats == pytest.approx(math.log(4), rel=1e-8)
    assert hot.nats == pytest.approx(math.log(4), rel=1e-4)
    assert all(check.agrees for check in e.temperatures.checks)
    limits = [check.what for check in e.temperatures.checks if "T ->" in check.what]
    assert len(limits) == 6


def test_ties_share_the_cold_limit_and_zeros_stay_zero() -> None:
    e = explain_distributions([0.4, 0.4, 0.2, 0.0], target="0", temperatures=[0.01, 100])
    assert e.temperatures is not None
    cold, _, hot = e.temperatures.rows
    assert cold.q == pytest.approx([0.5, 0.5, 0.0, 0.0], abs=1e-12)
    assert cold.entropy_nats == pytest.approx(math.log(2), rel=1e-12)
    assert all(row.q is not None and row.q[3] == 0.0 for row in e.temperatures.rows)
    assert hot.entropy_nats == pytest.approx(math.log(3), rel=1e-4)  # the support's size
    assert all(check.agrees for check in e.temperatures.checks)


def test_the_entropy_rises_with_the_temperature() -> None:
    e = explain_distributions(logits=[0.3, -1.0, 2.0, 0.0], target="3", temperatures=TEMPERATURES)
    assert e.temperatures is not None
    entropies = [row.entropy_nats for row in e.temperatures.rows]
    assert entropies == sorted(entropies)
    assert entropies[-1] < math.log(4)


@pytest.mark.parametrize("bad", [0.0, -1.0, math.inf, math.nan])
def test_bad_temperatures_are_refused(bad: float) -> None:
    with pytest.raises(ValueError, match="a temperature must be a finite number > 0"):
        explain_distributions([0.5, 0.5], target="0", temperatures=[2.0, bad])
    with pytest.raises(ValueError, match="--temperature must be a finite number > 0"):
        ExplainRequest(temperature=[bad])


def test_stability_takes_no_temperature() -> None:
    with pytest.raises(ValueError, match="--stability takes no --temperature"):
        ExplainRequest(stability=True, temperature=[2.0])


def test_the_request_passes_the_temperatures_to_the_three_animals() -> None:
    e = explain(ExplainRequest(temperature=[2.0]))
    assert isinstance(e, DistributionExplanation)
    assert e.labels == ("dog", "cat", "fish")
    assert e.temperatures is not None
    assert [row.temperature for row in e.temperatures.rows] == [1.0, 2.0]


# A real model and a short text.

TEXT = "Every effort moves you"
TEXT_TEMPERATURES = [0.5, 2.0, 4.0]


@pytest.fixture(scope="module")
def scanned(smollm2: HFCausalLM) -> TextExplanation:
    return explain_text(smollm2, TEXT, temperatures=TEXT_TEMPERATURES)


def test_text_rows_against_transformers_logits(
    smollm2: HFCausalLM, scanned: TextExplanation
) -> None:
    with torch.no_grad():
        logits = smollm2.model(torch.tensor([scanned.input_ids])).logits[0].double()  # (T, V)
    targets = torch.tensor([token.token_id for token in scanned.tokens])
    assert scanned.temperatures is not None
    assert [row.temperature for row in scanned.temperatures.rows] == [0.5, 1.0, 2.0, 4.0]
    for row in scanned.temperatures.rows:
        log_q = torch.log_softmax(logits / row.temperature, dim=-1)  # (T, V)
        token_log_q = log_q[torch.arange(len(targets)), targets]
        loss = -token_log_q.mean().item()
        entropy = -(log_q.exp() * log_q).sum(-1).mean().item()
        assert row.q is None
        assert row.nats == pytest.approx(loss, abs=1e-4)
        assert row.perplexity == pytest.approx(math.exp(loss), rel=1e-4)
        assert row.bits == pytest.approx(row.nats / math.log(2), rel=1e-14)
        assert row.entropy_nats == pytest.approx(entropy, abs=1e-4)
        assert row.target_probability == pytest.approx(token_log_q.exp().mean().item(), rel=1e-4)
    assert all(check.agrees for check in scanned.temperatures.checks), scanned.temperatures.checks


def test_text_at_temperature_1_is_the_plain_explanation(scanned: TextExplanation) -> None:
    nats, probability = _row_at_1(scanned)
    assert nats == pytest.approx(scanned.nats, rel=1e-12)
    mean = sum(token.probability for token in scanned.tokens) / len(scanned.tokens)
    assert probability == pytest.approx(mean, rel=1e-12)


def test_the_text_is_over_confident_at_1_and_a_higher_temperature_lowers_its_loss(
    scanned: TextExplanation,
) -> None:
    """A short phrase out of context surprises the model far more than its entropy says."""
    assert scanned.temperatures is not None
    rows = {row.temperature: row for row in scanned.temperatures.rows}
    assert rows[1.0].excess_nats > 1.0
    assert rows[2.0].nats < rows[1.0].nats
    assert rows[0.5].entropy_nats < rows[1.0].entropy_nats < rows[4.0].entropy_nats
    assert rows[4.0].entropy_nats < math.log(scanned.logits_shape[-1])


def test_text_json_carries_the_scan(scanned: TextExplanation) -> None:
    record = scanned.to_dict()["temperatures"]
    assert [row["temperature"] for row in record["rows"]] == [0.5, 1.0, 2.0, 4.0]
    assert list(record["rows"][0]) == [
        "temperature", "q", "target_probability", "nats", "bits", "perplexity", "entropy_nats",
        "excess_nats",
    ]  # fmt: skip
    assert all(check["agrees"] for check in record["checks"])


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_an_over_confident_tiny_model(dtype: torch.dtype) -> None:
    """A random model with its head scaled up is sure and wrong: its loss exceeds its entropy,
    and flattening its predictions (T > 1) lowers the loss; in bfloat16 too."""
    model = tiny_lm()
    with torch.no_grad():
        model.model.lm_head.weight.mul_(20)
    model.model.to(dtype)
    e = explain_text(model, "The cat sat on the mat. The dog ran.", temperatures=[0.5, 2, 4])
    assert e.temperatures is not None
    with torch.no_grad():
        logits = model.model(torch.tensor([e.input_ids])).logits[0].double()  # (T, V)
    targets = torch.tensor([token.token_id for token in e.tokens])
    rows = {row.temperature: row for row in e.temperatures.rows}
    for temperature, row in rows.items():
        log_q = torch.log_softmax(logits / temperature, dim=-1)
        loss = -log_q[torch.arange(len(targets)), targets].mean().item()
        entropy = -(log_q.exp() * log_q).sum(-1).mean().item()
        assert row.nats == pytest.approx(loss, abs=1e-4)
        assert row.entropy_nats == pytest.approx(entropy, abs=1e-4)
    assert rows[1.0].excess_nats > 1.0
    assert rows[4.0].nats < rows[2.0].nats < rows[1.0].nats < rows[0.5].nats
    assert all(check.agrees for check in (*e.checks, *e.temperatures.checks))
