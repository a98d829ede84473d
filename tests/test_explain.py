"""crossent.explain against independent oracles: the seeds' worked numbers, PyTorch's own
functions in float64, mpmath at 50 digits, and the model's logits through transformers itself."""

from __future__ import annotations

import json
import math

import mpmath
import pytest
import torch
import torch.nn.functional as F

import crossent
from crossent.data import Document
from crossent.explain import (
    DEFAULT_STABILITY_CASES,
    MAX_TEXT_TOKENS,
    Check,
    StabilityCase,
    TextExplanation,
    explain_distributions,
    explain_stability,
    explain_text,
    loss_curves,
    loss_curves_for,
)
from crossent.losses import reference
from crossent.models import HFCausalLM

ANIMALS = ["dog", "cat", "fish"]
SEED_000_Q = [0.2, 0.7, 0.1]


# Seed 000: the three animals.


def test_seed_000_one_hot_cat() -> None:
    cat = explain_distributions(SEED_000_Q, labels=ANIMALS, target="cat")
    assert cat.p == (0.0, 1.0, 0.0)
    # mypy's strict equality does not know that approx compares equal to a float
    assert cat.terms == (0.0, pytest.approx(-math.log(0.7), rel=1e-15), 0.0)  # type: ignore[comparison-overlap]
    assert cat.nats == pytest.approx(-math.log(0.7), rel=1e-15)  # 0.356675 nats
    assert cat.bits == pytest.approx(-math.log2(0.7), rel=1e-15)  # 0.514573 bits
    assert cat.perplexity == pytest.approx(1 / 0.7, rel=1e-15)
    assert cat.entropy_nats == 0.0
    assert cat.kl_nats == pytest.approx(cat.nats, rel=1e-15)
    assert not cat.soft
    assert all(check.agrees for check in cat.checks)


def test_a_better_prediction_costs_less() -> None:
    """Seed 000: 70% on the right answer should beat 20% on it."""
    good = explain_distributions(SEED_000_Q, labels=ANIMALS, target="cat")
    bad = explain_distributions(SEED_000_Q, labels=ANIMALS, target="dog")
    assert bad.nats == pytest.approx(-math.log(0.2), rel=1e-15)
    assert good.nats < bad.nats


def test_logits_give_the_same_as_their_softmax() -> None:
    logits = [0.3, 1.55, -0.4]
    q = torch.softmax(torch.tensor(logits, dtype=torch.float64), -1).tolist()
    from_logits = explain_distributions(logits=logits, labels=ANIMALS, target="fish")
    from_probs = explain_distributions(q, labels=ANIMALS, target="fish")
    assert from_logits.logits == tuple(logits)
    assert from_logits.q == pytest.approx(q, rel=1e-14)
    assert from_logits.nats == pytest.approx(from_probs.nats, rel=1e-14)
    expected = F.cross_entropy(torch.tensor([logits], dtype=torch.float64), torch.tensor([2]))
    assert from_logits.nats == pytest.approx(expected.item(), rel=1e-14)


def test_soft_target_identity_against_pytorch() -> None:
    p = [0.1, 0.8, 0.1]
    soft = explain_distributions(SEED_000_Q, labels=ANIMALS, p=p)
    p64, q64 = torch.tensor(p, dtype=torch.float64), torch.tensor(SEED_000_Q, dtype=torch.float64)
    entropy = torch.special.entr(p64).sum().item()
    kl = F.kl_div(q64.log(), p64, reduction="sum").item()
    assert soft.soft
    assert soft.entropy_nats == pytest.approx(entropy, rel=1e-14)  # 0.639032
    assert soft.kl_nats == pytest.approx(kl, rel=1e-13)  # 0.037510
    assert soft.nats == pytest.approx(-(p64 * q64.log()).sum().item(), rel=1e-14)  # 0.676542
    assert soft.nats == pytest.approx(soft.entropy_nats + soft.kl_nats, rel=1e-14)
    assert soft.kl_nats > 0
    same = explain_distributions(p, labels=ANIMALS, p=p)  # predicting the target itself
    assert same.kl_nats == pytest.approx(0.0, abs=1e-15)
    assert same.nats == pytest.approx(entropy, rel=1e-14)


@pytest.mark.parametrize("eps", [0.1, 0.25, 1.0])
def test_label_smoothing_is_pytorchs(eps: float) -> None:
    logits = torch.tensor([[2.0, 1.0, 0.1]], dtype=torch.float64)
    smoothed = explain_distributions(
        logits=logits[0].tolist(), labels=ANIMALS, target="cat", label_smoothing=eps
    )
    expected = F.cross_entropy(logits, torch.tensor([1]), label_smoothing=eps).item()
    assert smoothed.nats == pytest.approx(expected, rel=1e-14)
    assert smoothed.smoothed_p == pytest.approx([eps / 3, 1 - eps + eps / 3, eps / 3], rel=1e-15)
    assert smoothed.p == (0.0, 1.0, 0.0)
    assert smoothed.soft
    assert smoothed.nats == pytest.approx(smoothed.entropy_nats + smoothed.kl_nats, rel=1e-14)

    soft_p = [0.1, 0.8, 0.1]
    soft = explain_distributions(
        logits=logits[0].tolist(), labels=ANIMALS, p=soft_p, label_smoothing=eps
    )
    target = torch.tensor([soft_p], dtype=torch.float64)
    assert soft.nats == pytest.approx(
        F.cross_entropy(logits, target, label_smoothing=eps).item(), rel=1e-14
    )


def test_a_zero_probability_on_the_answer_costs_infinity() -> None:
    impossible = explain_distributions([0.0, 1.0, 0.0], labels=ANIMALS, target="dog")
    assert impossible.nats == math.inf
    assert impossible.perplexity == math.inf
    assert impossible.kl_nats == math.inf
    assert impossible.terms[1:] == (0.0, 0.0)  # 0 ln q = 0: no mass, no cost
    assert all(check.agrees for check in impossible.checks)


def test_extreme_logits_are_exact() -> None:
    wrong = explain_distributions(logits=[1000.0, 0.0, -1000.0], target="2")
    assert wrong.nats == 2000.0
    assert wrong.q == (1.0, 0.0, 0.0)  # q underflows, ln q does not
    assert wrong.log_q[2] == -2000.0


def test_probabilities_within_the_tolerance_are_normalised() -> None:
    near = explain_distributions([0.2, 0.7, 0.1000005], labels=ANIMALS, target="cat")
    assert math.fsum(near.q) == pytest.approx(1.0, abs=1e-15)
    assert near.nats == pytest.approx(-math.log(0.7 / 1.0000005), rel=1e-14)


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (
            {"q": [0.5, -0.2, 0.7], "target": "1"},
            r"q\('1'\) is -0.2; probabilities must be non-neg",
        ),
        ({"q": [0.2, 0.7, 0.2], "target": "1"}, "the probabilities q sum to 1.1, not 1"),
        ({"q": [0.2, 0.7, 0.1000011], "target": "1"}, "sum to 1.0000011, not 1"),
        ({"q": SEED_000_Q, "labels": ANIMALS, "target": "cow"}, "target 'cow' is not one of"),
        ({"q": SEED_000_Q, "labels": ["dog", "cat"], "target": "cat"}, "2 labels for 3 probab"),
        ({"q": SEED_000_Q, "labels": ["dog", "cat", "dog"], "target": "cat"}, "'dog' appears"),
        ({"q": SEED_000_Q, "p": [0.5, 0.5]}, "p has 2 probabilities for 3 classes"),
        ({"q": SEED_000_Q, "p": [0.5, 0.6, 0.0]}, "the probabilities p sum to 1.1"),
        ({"q": SEED_000_Q}, "give the target as one label or as a distribution p"),
        ({"q": SEED_000_Q, "target": "0", "p": SEED_000_Q}, "exactly one"),
        ({"logits": [1.0, math.nan], "target": "0"}, r"z\('1'\) is nan"),
        ({"q": SEED_000_Q, "logits": [1.0, 2.0, 3.0], "target": "0"}, "exactly one"),
        ({"q": [], "target": "0"}, "no classes"),
        ({"q": SEED_000_Q, "target": "0", "label_smoothing": 1.5}, r"must be in \[0, 1\]"),
    ],
)
def test_bad_distributions_are_refused(arguments: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        explain_distributions(**arguments)  # type: ignore[arg-type]


def test_distribution_json_keys_are_stable() -> None:
    cat = explain_distributions(SEED_000_Q, labels=ANIMALS, target="cat")
    record = json.loads(json.dumps(cat.to_dict()))
    assert list(record) == [
        "mode", "labels", "q", "log_q", "logits", "logsumexp", "target_logit", "target", "p",
        "label_smoothing", "smoothed_p", "terms", "nats", "bits", "perplexity", "entropy_nats",
        "kl_nats", "temperatures", "checks",
    ]  # fmt: skip
    assert record["mode"] == "distributions"
    assert record["temperatures"] is None  # none asked for
    assert (record["nats"], record["bits"], record["perplexity"]) == (
        cat.nats,
        cat.bits,
        cat.perplexity,
    )
    assert record["checks"][0].keys() == {
        "what", "value", "expected", "tolerance", "difference", "agrees",
    }  # fmt: skip


def test_a_check_can_disagree() -> None:
    assert not Check("x", 1.0, 1.1, 0.05).agrees
    assert Check("x", 1.0, 1.04, 0.05).agrees
    assert Check("x", math.inf, math.inf, 0.0).agrees
    assert not Check("x", math.nan, 1.0, math.inf).agrees


# Seed 004: its printed numbers, and the shapes its six steps and PyTorch's loss work on.


def test_seed_004_six_steps_on_its_shapes() -> None:
    """Logits [2, 3, 50257] whose targets all have -ln p = ln 48725.8203: the six steps, PyTorch
    on the flattened [6, 50257] tensors and crossent with the classes last give seed 004's loss."""
    vocabulary, loss = 50257, math.log(48725.8203)
    # p(target) = e^b / (e^b + V - 1) for a target logit b above V - 1 zeros; solve for b.
    boost = math.log((vocabulary - 1) / (math.exp(loss) - 1))
    targets = torch.tensor([[16833, 3626, 6100], [40, 1107, 588]])
    logits = torch.zeros(2, 3, vocabulary, dtype=torch.float64)
    logits.scatter_(-1, targets.unsqueeze(-1), boost)
    steps = reference.six_steps(logits, targets)
    assert steps.logits.shape == (2, 3, 50257)
    assert f"{steps.avg_log_probas.item():.4f}" == "-10.7940"
    assert f"{steps.neg_avg_log_probas.item():.4f}" == "10.7940"
    flat = F.cross_entropy(logits.flatten(0, 1), targets.flatten())  # [6, 50257] and [6]
    assert flat.item() == pytest.approx(loss, rel=1e-12)
    assert crossent.cross_entropy(logits, targets).item() == pytest.approx(loss, rel=1e-12)
    assert f"{torch.exp(flat).item():.4f}" == "48725.8203"


# Numerical stability, against mpmath at 50 digits.


def _exact(case: StabilityCase) -> tuple[float, float]:
    """Loss and target-logit gradient at 50 digits, from the logits the dtype holds."""
    dtype = torch.float32 if case.dtype == "float32" else torch.float64
    logits = [mpmath.mpf(value) for value in torch.tensor(case.logits, dtype=dtype).tolist()]
    with mpmath.workdps(50):
        log_normaliser = mpmath.log(mpmath.fsum(mpmath.exp(z) for z in logits))
        p_target = mpmath.exp(logits[case.target] - log_normaliser)
        return float(log_normaliser - logits[case.target]), float(p_target - 1)


def test_stability_table_against_mpmath() -> None:
    table = explain_stability()
    assert [row.case for row in table.rows] == list(DEFAULT_STABILITY_CASES)
    for row in table.rows:
        loss, gradient = _exact(row.case)
        eps = torch.finfo(torch.float32 if row.case.dtype == "float32" else torch.float64).eps
        assert row.exact_nats == pytest.approx(loss, rel=1e-15, abs=1e-300)
        assert row.exact_gradient == pytest.approx(gradient, rel=1e-15, abs=1e-300)
        assert row.log_space_nats == pytest.approx(loss, rel=4 * eps, abs=4 * eps)
        assert row.log_space_gradient == pytest.approx(gradient, rel=4 * eps, abs=4 * eps)
    assert all(check.agrees for check in table.checks)

    wrong = {row.case.name: row for row in table.rows}["confident and wrong"]
    assert wrong.exact_nats == 2000.0
    # the naive loss is capped at -ln 1e-10, and without the epsilon it is infinite
    assert wrong.naive_nats == pytest.approx(float(-mpmath.log(mpmath.mpf("1e-10"))), rel=1e-6)
    assert wrong.naive_without_epsilon_nats == math.inf
    assert wrong.naive_gradient == 0.0  # no signal where the exact gradient is -1
    assert wrong.exact_gradient == -1.0

    small = {row.case.name: row for row in table.rows}["p = 2e-9, nothing overflows"]
    p = float(mpmath.exp(-20) / (1 + mpmath.exp(-20)))
    assert small.naive_nats == pytest.approx(-math.log(p + 1e-10), rel=1e-14)  # 19.9526
    assert small.exact_nats - small.naive_nats > 0.04  # the epsilon's bias


def test_stability_of_a_row_of_a_large_vocabulary() -> None:
    """Float32 logits of size 1e4 over 50257 classes: crossent stays within PyTorch's error."""
    generator = torch.Generator().manual_seed(0)
    logits = (torch.randn(50257, generator=generator) * 1e4).tolist()
    case = StabilityCase("wide", tuple(logits), 7)
    (row,) = explain_stability([case]).rows
    loss, _ = _exact(case)
    assert row.log_space_nats == pytest.approx(loss, rel=1e-6)
    assert row.naive_nats == pytest.approx(-math.log(1e-10), rel=1e-6)


def test_bad_stability_cases_are_refused() -> None:
    with pytest.raises(ValueError, match="target 3 is outside"):
        explain_stability([StabilityCase("x", (1.0, 2.0), 3)])
    with pytest.raises(ValueError, match="overflows float32"):
        explain_stability([StabilityCase("x", (1e39, 2.0), 0)])
    with pytest.raises(ValueError, match="no cases"):
        explain_stability([])


def test_stability_json_keys() -> None:
    record = explain_stability().to_dict()
    assert record["mode"] == "stability"
    assert list(record["rows"][0]) == [
        "name", "logits", "target", "dtype", "naive_nats", "naive_without_epsilon_nats",
        "log_space_nats", "torch_nats", "exact_nats", "naive_gradient", "log_space_gradient",
        "torch_gradient", "exact_gradient",
    ]  # fmt: skip


# The curves of seed 003's figures.


def test_loss_curves_against_math() -> None:
    curves = loss_curves(points=99, smallest=1e-8)
    assert curves.probability[0] == pytest.approx(1e-8)
    assert curves.probability[-1] == pytest.approx(1 - 1e-8)
    assert list(curves.probability) == sorted(set(curves.probability))
    for p, if_1, if_0 in zip(curves.probability, curves.loss_if_1, curves.loss_if_0, strict=True):
        assert if_1 == pytest.approx(-math.log(p), rel=1e-12)
        assert if_0 == pytest.approx(-math.log1p(-p), rel=1e-12)
    assert all(check.agrees for check in curves.checks)
    half = curves.probability.index(0.5)
    assert curves.loss_if_1[half] == pytest.approx(math.log(2), rel=1e-15)


def test_curves_reach_the_smallest_marked_probability() -> None:
    wrong = explain_distributions([0.9, 1e-6, 0.1 - 1e-6], target="1")
    assert loss_curves_for(wrong).probability[0] == pytest.approx(5e-7)
    assert loss_curves_for(explain_stability()).probability[0] == pytest.approx(1e-3)


# A real model and a text.

TEXT = "Every effort moves you"


@pytest.fixture(scope="module")
def explained(smollm2: HFCausalLM) -> TextExplanation:
    return explain_text(smollm2, TEXT)


@pytest.fixture(scope="module")
def log_probs(smollm2: HFCausalLM, explained: TextExplanation) -> torch.Tensor:
    """ln softmax of the logits transformers itself computes, in float64: ``(T, V)``."""
    with torch.no_grad():
        logits = smollm2.model(torch.tensor([explained.input_ids])).logits[0]  # (T, V)
    return torch.log_softmax(logits.double(), dim=-1)


def test_six_steps_on_the_real_model(
    smollm2: HFCausalLM, explained: TextExplanation, log_probs: torch.Tensor
) -> None:
    ids = smollm2.tokenizer.encode(TEXT)
    assert explained.prefix == "bos"
    assert explained.input_ids == (smollm2.tokenizer.bos_token_id, *ids[:-1])
    assert [token.token_id for token in explained.tokens] == ids
    assert [token.position for token in explained.tokens] == [0, 1, 2, 3]
    assert "".join(token.text for token in explained.tokens) == TEXT
    assert explained.logits_shape == (1, len(ids), smollm2.vocab_size)

    expected = log_probs.gather(-1, torch.tensor(ids)[:, None])[:, 0]
    for token, log_p in zip(explained.tokens, expected.tolist(), strict=True):
        assert token.log_probability == pytest.approx(log_p, abs=1e-4)
        assert token.probability == pytest.approx(math.exp(log_p), rel=1e-4)
    assert explained.mean_log_probability == pytest.approx(expected.mean().item(), abs=1e-4)
    assert explained.nats == -explained.mean_log_probability
    assert explained.bits == pytest.approx(explained.nats / math.log(2), rel=1e-15)
    assert explained.perplexity == pytest.approx(math.exp(explained.nats), rel=1e-15)
    assert explained.probability_sum_error < 1e-12
    assert all(check.agrees for check in explained.checks), explained.checks


def test_ranks_and_alternatives_from_transformers_logits(
    smollm2: HFCausalLM, explained: TextExplanation, log_probs: torch.Tensor
) -> None:
    for row, token in zip(log_probs, explained.tokens, strict=True):
        assert token.rank == int((row > row[token.token_id]).sum()) + 1
        top = row.topk(5)
        assert token.top_ids == tuple(top.indices.tolist())
        assert token.top_probs == pytest.approx(top.values.exp().tolist(), abs=1e-5)
        assert token.top_texts == tuple(smollm2.tokenizer.decode([i]) for i in token.top_ids)


def test_agrees_with_evaluate_and_pytorch_to_the_printed_precision(
    smollm2: HFCausalLM, explained: TextExplanation, log_probs: torch.Tensor
) -> None:
    evaluation = crossent.evaluate(smollm2, [Document("doc", TEXT)])
    assert evaluation.totals.tokens == len(explained.tokens)
    assert abs(evaluation.totals.nats_per_token - explained.nats) < 5e-5  # half the last digit
    loss = F.nll_loss(log_probs.float(), torch.tensor([t.token_id for t in explained.tokens]))
    assert abs(loss.item() - explained.nats) < 5e-5


def test_without_a_prefix_the_first_token_is_context(smollm2: HFCausalLM) -> None:
    ids = smollm2.tokenizer.encode(TEXT)
    bare = explain_text(smollm2, TEXT, prefix="none", top_k=2)
    assert bare.input_ids == tuple(ids[:-1])
    assert [token.position for token in bare.tokens] == [1, 2, 3]
    assert [token.token_id for token in bare.tokens] == ids[1:]
    assert all(len(token.top_ids) == 2 for token in bare.tokens)
    assert all(check.agrees for check in bare.checks)


@pytest.mark.parametrize(
    ("text", "options", "message"),
    [
        ("", {}, "the text is empty"),
        ("Every", {"prefix": "none"}, "the text is one token and there is no prefix"),
        ("word " * MAX_TEXT_TOKENS, {}, f"explain shows at most {MAX_TEXT_TOKENS}"),
        (TEXT, {"top_k": 0}, "top_k 0 is outside"),
    ],
)
def test_bad_texts_are_refused(
    smollm2: HFCausalLM, text: str, options: dict[str, object], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        explain_text(smollm2, text, **options)  # type: ignore[arg-type]


def test_text_json_keys(explained: TextExplanation) -> None:
    record = json.loads(json.dumps(explained.to_dict()))
    assert record["mode"] == "text"
    assert {"nats", "bits", "perplexity", "logits_shape", "tokens", "checks"} <= record.keys()
    assert record["logits_shape"] == list(explained.logits_shape)
    assert list(record["tokens"][0]) == [
        "position", "token_id", "text", "probability", "log_probability", "nats", "rank", "top",
    ]  # fmt: skip
    assert len(record["tokens"][0]["top"]) == 5
    # the alternatives under the keys of ``crossent eval --per-token``
    first = explained.tokens[0]
    assert record["tokens"][0]["top"][0] == {
        "id": first.top_ids[0], "text": first.top_texts[0], "prob": first.top_probs[0],
    }  # fmt: skip
