"""Units and the NLL meter, checked against hand-computed numbers and the definitions."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable

import mpmath
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from crossent.metrics import (
    NLLMeter,
    bits_per_byte,
    bits_to_nats,
    byte_perplexity,
    nats_to_bits,
    perplexity,
    perplexity_from_bits,
    word_perplexity,
)

LN2 = math.log(2.0)


# Seed 000: q = (0.2, 0.7, 0.1) over (dog, cat, fish), target cat: -ln 0.7 nats, -log2 0.7 bits,
# here at 50 digits by mpmath.
def test_seed_000_one_token_in_nats_and_bits() -> None:
    with mpmath.workdps(50):
        nats, bits = -mpmath.log(mpmath.mpf("0.7")), -mpmath.log(mpmath.mpf("0.7"), 2)
    assert nats_to_bits(float(nats)) == pytest.approx(float(bits), rel=1e-15)
    assert nats_to_bits(float(nats)) == pytest.approx(0.514573, abs=5e-7)
    assert bits_to_nats(float(bits)) == pytest.approx(float(nats), rel=1e-15)


# Seed 001: "a model with cross-entropy loss of 3.32 has a perplexity of 10", in bits.
def test_seed_001_cross_entropy_in_bits_gives_perplexity_about_10() -> None:
    assert perplexity_from_bits(3.32) == pytest.approx(float(mpmath.power(2, 3.32)), rel=1e-15)
    assert abs(perplexity_from_bits(3.32) - 10.0) < 0.1
    assert perplexity(bits_to_nats(3.32)) == pytest.approx(perplexity_from_bits(3.32), rel=1e-12)


# Seed 004 prints loss tensor(10.7940) and torch.exp(loss) = tensor(48725.8203). The loss is
# rounded to four decimals for print: e**10.7940 itself is 48727.56, so the printed pair only
# pins the loss to [10.79395, 10.79405), and 48725.8203 implies a loss of 10.793964.
def test_seed_004_perplexity_is_e_to_the_loss_in_nats() -> None:
    assert perplexity(10.79395) < 48725.8203 < perplexity(10.79405)
    assert abs(perplexity(10.793964) - 48725.8) < 0.1
    # In bits the same number would be absurd: 2**10.794 is under 2000.
    assert perplexity_from_bits(10.7940) < 2000


def test_perplexity_matches_float32_torch_exp() -> None:
    loss = torch.tensor(10.793964, dtype=torch.float32)
    assert perplexity(loss.item()) == pytest.approx(torch.exp(loss.double()).item(), rel=1e-12)
    assert perplexity(loss.item()) == pytest.approx(torch.exp(loss).item(), rel=1e-6)


@given(st.floats(min_value=0.0, max_value=50.0))
def test_perplexity_in_nats_equals_two_to_the_bits(x: float) -> None:
    assert math.isclose(perplexity(x), perplexity_from_bits(nats_to_bits(x)), rel_tol=1e-12)
    assert math.isclose(perplexity(x), float(mpmath.exp(x)), rel_tol=1e-15)


@given(
    st.floats(
        min_value=-1e300,
        max_value=1e300,
        allow_nan=False,
        allow_infinity=False,
        allow_subnormal=False,
    )
)
def test_bits_nats_round_trip(x: float) -> None:
    assert math.isclose(nats_to_bits(bits_to_nats(x)), x, rel_tol=1e-15)
    assert math.isclose(bits_to_nats(nats_to_bits(x)), x, rel_tol=1e-15)


def test_one_bit_is_ln2_nats() -> None:
    assert bits_to_nats(1.0) == LN2
    assert nats_to_bits(LN2) == 1.0
    assert nats_to_bits(math.log(1024.0)) == pytest.approx(10.0, rel=1e-15)


def test_perplexity_of_uniform_distribution_is_its_size() -> None:
    assert perplexity(math.log(50257.0)) == pytest.approx(50257.0, rel=1e-13)
    assert perplexity_from_bits(math.log2(50257.0)) == pytest.approx(50257.0, rel=1e-13)
    assert perplexity(0.0) == 1.0


def test_overflow_gives_infinity() -> None:
    assert perplexity(1000.0) == math.inf
    assert perplexity(math.inf) == math.inf
    assert perplexity_from_bits(2000.0) == math.inf
    assert byte_perplexity(1e6, 1) == math.inf
    assert word_perplexity(1e6, 1) == math.inf


# lm-evaluation-harness, from the summed log-likelihood of a document:
# word_perplexity = exp(-sum loglik / words), byte_perplexity = exp(-sum loglik / bytes),
# bits_per_byte = -sum loglik / bytes / ln 2.
def test_byte_and_word_units_follow_lm_evaluation_harness() -> None:
    logliks = [-2.5, -0.125, -7.0, -1.375]  # sum -11.0, exact in binary
    num_bytes, num_words = 22, 4
    total_nats = -sum(logliks)
    assert bits_per_byte(total_nats, num_bytes) == pytest.approx(11.0 / 22 / LN2, rel=1e-15)
    assert bits_per_byte(total_nats, num_bytes) == pytest.approx(0.5 / LN2, rel=1e-15)
    assert byte_perplexity(total_nats, num_bytes) == pytest.approx(math.exp(0.5), rel=1e-15)
    assert word_perplexity(total_nats, num_words) == pytest.approx(math.exp(2.75), rel=1e-15)


@pytest.mark.parametrize(
    ("function", "message"),
    [
        (bits_per_byte, "bits per byte needs at least one byte, got 0"),
        (byte_perplexity, "byte perplexity needs at least one byte, got 0"),
        (word_perplexity, "word perplexity needs at least one word, got 0"),
    ],
)
def test_zero_divisor_is_an_error(function: Callable[[float, int], float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        function(1.0, 0)
    with pytest.raises(ValueError, match="got -3"):
        function(1.0, -3)


def test_meter_totals_and_units_by_hand() -> None:
    meter = NLLMeter()
    meter.update(2.0, 4, bytes=8, words=2, correct=3)
    meter.update(
        torch.tensor([[0.5], [1.5]]), torch.tensor([True, True]), bytes=4, words=1, correct=1
    )
    assert (meter.nll_nats, meter.tokens, meter.bytes, meter.words, meter.correct) == (
        4.0,
        6,
        12,
        3,
        4,
    )
    result = meter.result()
    assert result.nll_nats == 4.0
    assert (result.tokens, result.bytes, result.words, result.correct) == (6, 12, 3, 4)
    assert result.nats_per_token == pytest.approx(2 / 3, rel=1e-15)
    assert result.bits_per_token == pytest.approx(2 / 3 / LN2, rel=1e-15)
    assert result.perplexity == pytest.approx(math.exp(2 / 3), rel=1e-15)
    assert result.accuracy == pytest.approx(2 / 3, rel=1e-15)
    assert result.bits_per_byte == pytest.approx(4 / 12 / LN2, rel=1e-15)
    assert result.byte_perplexity == pytest.approx(math.exp(1 / 3), rel=1e-15)
    assert result.word_perplexity == pytest.approx(math.exp(4 / 3), rel=1e-15)


def test_meter_sums_low_precision_tensors_in_float64() -> None:
    # float32 cannot hold 1e8 + 1 (its spacing there is 8): a float32 sum loses the ones.
    losses = torch.tensor([1e8, 1.0, 1.0, 1.0, 1.0], dtype=torch.float32)
    meter = NLLMeter()
    meter.update(losses, losses.numel())
    assert meter.nll_nats == math.fsum([1e8, 1.0, 1.0, 1.0, 1.0])
    assert isinstance(meter.nll_nats, float)
    halves = torch.tensor([0.1, 0.2, 0.3], dtype=torch.bfloat16)
    meter = NLLMeter()
    meter.update(halves, 3)
    assert meter.nll_nats == math.fsum(float(value) for value in halves.tolist())


def test_meter_counts_masks_and_integer_tensors() -> None:
    mask = torch.tensor([[True, False, True], [True, True, False]])
    meter = NLLMeter()
    meter.update(torch.zeros(2, 3), mask, correct=torch.tensor([1, 0, 1], dtype=torch.int32))
    assert (meter.tokens, meter.correct) == (4, 2)
    assert isinstance(meter.tokens, int)
    assert isinstance(meter.correct, int)


def test_merge_equals_one_meter_fed_everything() -> None:
    batches = [
        (1.25, 3, 10, 2, 1),
        (0.5, 1, 4, 1, 1),
        (3.0, 5, 20, 4, 0),
        (0.75, 2, 7, 1, 2),
    ]
    whole = NLLMeter()
    first, second = NLLMeter(), NLLMeter()
    for index, (nll, tokens, num_bytes, words, correct) in enumerate(batches):
        whole.update(nll, tokens, bytes=num_bytes, words=words, correct=correct)
        part = first if index < 2 else second
        part.update(nll, tokens, bytes=num_bytes, words=words, correct=correct)
    second_before = dataclasses.replace(second)
    merged = first.merge(second)
    assert merged is first
    assert second == second_before
    assert merged == whole
    assert (merged.nll_nats, merged.tokens, merged.bytes, merged.words, merged.correct) == (
        5.5,
        11,
        41,
        8,
        4,
    )


def test_result_leaves_byte_and_word_units_out_when_not_counted() -> None:
    meter = NLLMeter()
    meter.update(3.0, 2)
    result = meter.result()
    assert result.bits_per_byte is None
    assert result.byte_perplexity is None
    assert result.word_perplexity is None
    assert result.perplexity == pytest.approx(math.exp(1.5), rel=1e-15)


def test_result_of_huge_loss_is_infinite_not_an_error() -> None:
    meter = NLLMeter()
    meter.update(1e6, 1, bytes=1, words=1)
    result = meter.result()
    assert result.perplexity == math.inf
    assert result.byte_perplexity == math.inf
    assert result.word_perplexity == math.inf
    assert result.bits_per_byte == pytest.approx(1e6 / LN2, rel=1e-15)


def test_empty_meter_has_no_result() -> None:
    with pytest.raises(ValueError, match="no tokens were scored"):
        NLLMeter().result()
    meter = NLLMeter()
    meter.update(0.0, 0)
    with pytest.raises(ValueError, match="no tokens were scored"):
        meter.result()


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"tokens": -1}, "tokens must be non-negative, got -1"),
        ({"tokens": torch.tensor([2, -5])}, "tokens must be non-negative, got -3"),
        ({"tokens": 1, "bytes": -2}, "bytes must be non-negative, got -2"),
        ({"tokens": 1, "words": -1}, "words must be non-negative, got -1"),
        ({"tokens": 1, "correct": -1}, "correct must be non-negative, got -1"),
        ({"tokens": 1, "correct": 2}, r"correct \(2\) cannot exceed tokens \(1\)"),
    ],
)
def test_bad_counts_are_rejected_and_leave_the_meter_unchanged(
    arguments: dict[str, object], message: str
) -> None:
    meter = NLLMeter()
    meter.update(1.0, 1, bytes=1, words=1, correct=1)
    before = dataclasses.replace(meter)
    with pytest.raises(ValueError, match=message):
        meter.update(1.0, **arguments)  # type: ignore[arg-type]
    assert meter == before


def test_non_integer_counts_and_nan_loss_are_rejected() -> None:
    meter = NLLMeter()
    with pytest.raises(TypeError, match="tokens must be an integer or bool tensor"):
        meter.update(1.0, torch.tensor([1.0, 2.0]))
    with pytest.raises(TypeError):
        meter.update(1.0, 2.5)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="nll_nats must be a floating-point tensor"):
        meter.update(torch.tensor([1, 2]), 2)
    with pytest.raises(ValueError, match="NaN"):
        meter.update(torch.tensor([1.0, math.nan]), 2)
    assert meter == NLLMeter()


def test_to_dict_has_every_field_by_name() -> None:
    meter = NLLMeter()
    meter.update(2.0, 2, bytes=4, words=1, correct=1)
    result = meter.result()
    as_dict = result.to_dict()
    assert list(as_dict) == [
        "tokens",
        "bytes",
        "words",
        "nll_nats",
        "correct",
        "nats_per_token",
        "bits_per_token",
        "perplexity",
        "accuracy",
        "bits_per_byte",
        "byte_perplexity",
        "word_perplexity",
        "nats_per_token_se",
        "bits_per_token_se",
        "perplexity_se",
        "bits_per_byte_se",
    ]
    assert as_dict["nats_per_token"] == 1.0
    assert as_dict["perplexity"] == pytest.approx(math.e, rel=1e-15)
    assert as_dict["bits_per_byte"] == pytest.approx(0.5 / LN2, rel=1e-15)
    assert as_dict["accuracy"] == 0.5


def test_result_is_frozen() -> None:
    meter = NLLMeter()
    meter.update(1.0, 1)
    result = meter.result()
    with pytest.raises(dataclasses.FrozenInstanceError):
        result.tokens = 2  # type: ignore[misc]
