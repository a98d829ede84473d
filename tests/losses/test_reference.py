"""The textbook oracle against independent ground truths: PyTorch in float64, PyTorch's own
pure-Python reference (``common_nn``), hand-computed formulas and the seeds' worked numbers."""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.testing._internal.common_nn import cross_entropy_loss_reference

from crossent.losses._checks import Reduction
from crossent.losses.reference import (
    binary_cross_entropy,
    cross_entropy,
    distillation_loss,
    kl_divergence,
    six_steps,
)

F64 = torch.float64


def _assert_exact(actual: Tensor, expected: Tensor) -> None:
    """Equal up to float64 rounding: both sides compute the same formula in a different order."""
    torch.testing.assert_close(actual, expected, rtol=1e-12, atol=1e-12)


def _loss_and_grad(
    loss_fn: Callable[[Tensor], Tensor], logits: Tensor, upstream: Tensor | None = None
) -> tuple[Tensor, Tensor]:
    """The loss and d(loss)/d(logits); a non-scalar loss is contracted with ``upstream`` first."""
    leaf = logits.detach().clone().requires_grad_(True)
    loss = loss_fn(leaf)
    scalar = loss if upstream is None else (loss * upstream).sum()
    (grad,) = torch.autograd.grad(scalar, leaf)
    return loss.detach(), grad


# Seed 000: a model guesses dog 0.2, cat 0.7, fish 0.1, and the answer is cat.


def test_seed_000_dog_cat_fish_in_nats_and_bits() -> None:
    logits = torch.tensor([[0.2, 0.7, 0.1]], dtype=F64).log()
    cat = torch.tensor([1])

    loss = cross_entropy(logits, cat)
    steps = six_steps(logits, cat)

    assert round(loss.item(), 6) == 0.356675
    assert round(steps.neg_avg_log_probas.item(), 6) == 0.356675
    assert round(loss.item() / math.log(2), 6) == 0.514573
    assert steps.target_probas.item() == pytest.approx(0.7, abs=1e-15)


# Seed 004: the six steps from logits to loss.


def test_seed_004_six_steps_agree_with_pytorch_and_with_each_other() -> None:
    generator = torch.Generator().manual_seed(4)
    logits = torch.randn(2, 3, 11, generator=generator)  # (B, T, V) in float32, like the book
    targets = torch.randint(0, 11, (2, 3), generator=generator)

    steps = six_steps(logits, targets)

    expected = F.cross_entropy(logits.double().flatten(0, 1), targets.flatten())
    _assert_exact(steps.neg_avg_log_probas, expected)
    assert all(
        step.dtype == F64
        for step in (steps.logits, steps.probas, steps.target_probas, steps.log_probas)
    )
    _assert_exact(steps.logits, logits.double())
    _assert_exact(steps.probas.sum(-1), torch.ones(2, 3, dtype=F64))
    ratios = steps.probas / steps.probas[..., :1]  # softmax: ratios are exp of logit differences
    _assert_exact(ratios, (steps.logits - steps.logits[..., :1]).exp())
    for b, t in itertools.product(range(2), range(3)):
        assert steps.target_probas[b, t] == steps.probas[b, t, targets[b, t]]
    _assert_exact(steps.log_probas, steps.target_probas.log())
    _assert_exact(steps.avg_log_probas, steps.log_probas.sum() / 6)
    assert steps.neg_avg_log_probas == -steps.avg_log_probas


def test_seed_004_worked_numbers_round_trip_through_the_six_steps() -> None:
    # The book prints avg log prob -10.7940, loss 10.7940 and perplexity 48725.8203. The printed
    # loss is rounded (exp(10.7940) is 48727.6), so build six tokens whose mean negative log
    # probability is ln(48725.8203) and check the book's numbers come out of the steps.
    book_loss = math.log(48725.8203)
    per_token = [book_loss + offset for offset in (-1.5, -0.5, 0.0, 0.25, 0.75, 1.0)]
    # Two classes, target 0 at logit 0: p_target = 1 / (1 + e^other), so other = log(1/p - 1).
    rows = [[0.0, math.log(math.exp(nll) - 1.0)] for nll in per_token]
    logits = torch.tensor(rows, dtype=F64).reshape(2, 3, 2)
    targets = torch.zeros(2, 3, dtype=torch.long)

    steps = six_steps(logits, targets)

    assert round(steps.avg_log_probas.item(), 4) == -10.7940
    assert round(steps.neg_avg_log_probas.item(), 4) == 10.7940
    assert torch.exp(steps.neg_avg_log_probas).item() == pytest.approx(48725.8, abs=0.1)


def test_six_steps_underflows_where_cross_entropy_does_not() -> None:
    logits = torch.tensor([[0.0, 1000.0]], dtype=F64)
    target = torch.tensor([0])

    assert six_steps(logits, target).neg_avg_log_probas.item() == math.inf
    assert cross_entropy(logits, target).item() == pytest.approx(1000.0, rel=1e-15)


# cross_entropy: parity with PyTorch's kernel and PyTorch's pure-Python reference.

NUM_ROWS, NUM_CLASSES = 7, 5


def _parity_case(target_kind: str, ignore: bool, seed: int) -> tuple[Tensor, Tensor, Tensor]:
    generator = torch.Generator().manual_seed(seed)
    logits = 3 * torch.randn(NUM_ROWS, NUM_CLASSES, generator=generator, dtype=F64)
    weight = 0.5 + torch.rand(NUM_CLASSES, generator=generator, dtype=F64)
    if target_kind == "class":
        target = torch.randint(0, NUM_CLASSES, (NUM_ROWS,), generator=generator)
        if ignore:
            target[[1, 4]] = -100
    else:
        raw = torch.rand(NUM_ROWS, NUM_CLASSES, generator=generator, dtype=F64)
        raw[0, 2] = 0.0  # a class with no target mass
        target = raw / raw.sum(-1, keepdim=True)
    return logits, target, weight


@pytest.mark.parametrize("reduction", ["none", "sum", "mean"])
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("ignore", [False, True])
@pytest.mark.parametrize("label_smoothing", [0.0, 0.1])
@pytest.mark.parametrize("target_kind", ["class", "probability"])
def test_cross_entropy_matches_pytorch_and_its_python_reference(
    reduction: Reduction, weighted: bool, ignore: bool, label_smoothing: float, target_kind: str
) -> None:
    logits, target, weight = _parity_case(target_kind, ignore, seed=17)
    class_weight = weight if weighted else None
    upstream = torch.linspace(0.5, 2.0, NUM_ROWS, dtype=F64) if reduction == "none" else None

    ours = _loss_and_grad(
        lambda z: cross_entropy(
            z, target, class_weight, reduction=reduction, label_smoothing=label_smoothing
        ),
        logits,
        upstream,
    )
    kernel = _loss_and_grad(
        lambda z: F.cross_entropy(
            z, target, class_weight, reduction=reduction, label_smoothing=label_smoothing
        ),
        logits,
        upstream,
    )
    python_reference = _loss_and_grad(
        lambda z: cross_entropy_loss_reference(  # type: ignore[no-untyped-call]
            z, target, class_weight, reduction=reduction, label_smoothing=label_smoothing
        ),
        logits,
        upstream,
    )

    assert ours[0].dtype == F64
    for truth in (kernel, python_reference):
        _assert_exact(ours[0], truth[0])
        _assert_exact(ours[1], truth[1])


def test_cross_entropy_leading_dimensions_match_flattened_pytorch() -> None:
    generator = torch.Generator().manual_seed(3)
    logits = torch.randn(2, 3, 4, NUM_CLASSES, generator=generator, dtype=F64)  # (B, T, K, V)
    target = torch.randint(0, NUM_CLASSES, (2, 3, 4), generator=generator)
    target[0, 1, 2] = -100

    per_token = cross_entropy(logits, target, reduction="none", label_smoothing=0.2)
    expected = F.cross_entropy(
        logits.reshape(-1, NUM_CLASSES), target.reshape(-1), reduction="none", label_smoothing=0.2
    )

    assert per_token.shape == (2, 3, 4)
    _assert_exact(per_token.reshape(-1), expected)


def test_probability_target_with_zero_mass_on_an_impossible_class_is_finite() -> None:
    # Class 3 has logit -inf and no target mass: by 0 * log 0 = 0 it drops out, so the loss and
    # gradient equal those of the problem without class 3.
    logits = torch.tensor([[1.0, -0.5, 2.0, -math.inf], [0.3, 0.1, -1.0, -math.inf]], dtype=F64)
    target = torch.tensor([[0.2, 0.3, 0.5, 0.0], [0.6, 0.4, 0.0, 0.0]], dtype=F64)
    weight = torch.tensor([1.0, 2.0, 0.5, 3.0], dtype=F64)

    loss, grad = _loss_and_grad(lambda z: cross_entropy(z, target, weight), logits)
    expected_loss, expected_grad = _loss_and_grad(
        lambda z: F.cross_entropy(z, target[:, :3], weight[:3]), logits[:, :3]
    )

    _assert_exact(loss, expected_loss)
    _assert_exact(grad[:, :3], expected_grad)
    assert torch.equal(grad[:, 3], torch.zeros(2, dtype=F64))


# softcap and z-loss, against formulas written out with the math module.


def _hand_capped_loss_and_grad(
    row: list[float], target: int, cap: float, z_coefficient: float
) -> tuple[float, list[float]]:
    """loss = lse(c) - c[t] + k * lse(c)^2 with c = cap * tanh(z / cap), and d(loss)/dz."""
    capped = [cap * math.tanh(value / cap) for value in row]
    lse = math.log(sum(math.exp(value) for value in capped))
    softmax = [math.exp(value - lse) for value in capped]
    loss = lse - capped[target] + z_coefficient * lse**2
    grad = [
        (p - (1.0 if c == target else 0.0) + 2 * z_coefficient * lse * p)
        * (1 - math.tanh(row[c] / cap) ** 2)
        for c, p in enumerate(softmax)
    ]
    return loss, grad


def test_softcap_and_z_loss_match_the_hand_formula() -> None:
    rows = [[2.0, -1.0, 0.5], [4.0, 0.25, -3.0], [0.1, 0.2, 0.3]]
    targets = [0, 2, 1]
    cap, z_coefficient = 1.5, 0.1
    logits = torch.tensor(rows, dtype=F64)
    target = torch.tensor([targets[0], targets[1], -100])  # the third row is ignored
    hand = [_hand_capped_loss_and_grad(rows[i], targets[i], cap, z_coefficient) for i in (0, 1)]

    def ours(reduction: Reduction) -> Callable[[Tensor], Tensor]:
        return lambda z: cross_entropy(
            z, target, reduction=reduction, z_loss=z_coefficient, softcap=cap
        )

    per_token, _ = _loss_and_grad(ours("none"), logits, torch.ones(3, dtype=F64))
    total, total_grad = _loss_and_grad(ours("sum"), logits)
    mean, mean_grad = _loss_and_grad(ours("mean"), logits)

    expected_rows = [hand[0][0], hand[1][0], 0.0]
    expected_grad = torch.tensor([hand[0][1], hand[1][1], [0.0, 0.0, 0.0]], dtype=F64)
    _assert_exact(per_token, torch.tensor(expected_rows, dtype=F64))
    assert total.item() == pytest.approx(hand[0][0] + hand[1][0], rel=1e-13)
    assert mean.item() == pytest.approx((hand[0][0] + hand[1][0]) / 2, rel=1e-13)
    _assert_exact(total_grad, expected_grad)
    _assert_exact(mean_grad, expected_grad / 2)


def test_z_loss_under_mean_uses_the_unweighted_count_of_scored_tokens() -> None:
    logits, target, weight = _parity_case("class", ignore=True, seed=5)
    scored = target != -100

    loss = cross_entropy(logits, target, weight, z_loss=1e-3)

    lse_squared = torch.logsumexp(logits, dim=-1)[scored] ** 2
    expected = F.cross_entropy(logits, target, weight) + 1e-3 * lse_squared.mean()
    _assert_exact(loss, expected)


@pytest.mark.parametrize("weighted", [False, True])
def test_mean_over_nothing_scored_is_zero_with_zero_gradient(weighted: bool) -> None:
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(4, NUM_CLASSES, generator=generator, dtype=F64)
    weight = torch.rand(NUM_CLASSES, generator=generator, dtype=F64) if weighted else None
    all_ignored = torch.full((4,), -100)

    loss, grad = _loss_and_grad(
        lambda z: cross_entropy(
            z, all_ignored, weight, label_smoothing=0.1, z_loss=1e-2, softcap=30.0
        ),
        logits,
    )

    assert loss.item() == 0.0
    assert torch.equal(grad, torch.zeros_like(logits))


def test_mean_over_empty_input_is_zero() -> None:
    empty_logits = torch.zeros(0, NUM_CLASSES, dtype=F64, requires_grad=True)

    class_loss = cross_entropy(empty_logits, torch.zeros(0, dtype=torch.long))
    probability_loss = cross_entropy(empty_logits, torch.zeros(0, NUM_CLASSES, dtype=F64))

    assert class_loss.item() == 0.0
    assert probability_loss.item() == 0.0
    assert cross_entropy(
        empty_logits, torch.zeros(0, dtype=torch.long), reduction="none"
    ).shape == (0,)


def test_cross_entropy_rejects_a_target_outside_the_vocabulary() -> None:
    with pytest.raises(ValueError, match="outside the vocabulary"):
        cross_entropy(torch.zeros(2, 3), torch.tensor([0, 3]))


# binary_cross_entropy and kl_divergence: parity with PyTorch in float64.


@pytest.mark.parametrize("reduction", ["none", "sum", "mean"])
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("pos_weighted", [False, True])
def test_binary_cross_entropy_matches_pytorch(
    reduction: Reduction, weighted: bool, pos_weighted: bool
) -> None:
    generator = torch.Generator().manual_seed(11)
    logits = 4 * torch.randn(4, 3, generator=generator, dtype=F64)
    target = torch.rand(4, 3, generator=generator, dtype=F64)
    target[0] = torch.tensor([0.0, 1.0, 1.0], dtype=F64)
    weight = torch.rand(4, 3, generator=generator, dtype=F64) if weighted else None
    pos_weight = torch.tensor([0.5, 2.0, 3.0], dtype=F64) if pos_weighted else None
    upstream = torch.rand(4, 3, generator=generator, dtype=F64) if reduction == "none" else None

    ours = _loss_and_grad(
        lambda x: binary_cross_entropy(x, target, weight, pos_weight, reduction), logits, upstream
    )
    expected = _loss_and_grad(
        lambda x: F.binary_cross_entropy_with_logits(
            x, target, weight, reduction=reduction, pos_weight=pos_weight
        ),
        logits,
        upstream,
    )

    _assert_exact(ours[0], expected[0])
    _assert_exact(ours[1], expected[1])


def _torch_kl_rows(student: Tensor, teacher: Tensor, temperature: float) -> Tensor:
    return F.kl_div(
        F.log_softmax(student / temperature, dim=-1),
        F.log_softmax(teacher / temperature, dim=-1),
        reduction="none",
        log_target=True,
    ).sum(-1)


@pytest.mark.parametrize("temperature", [1.0, 2.5])
def test_kl_divergence_matches_pytorch_kl_div(temperature: float) -> None:
    generator = torch.Generator().manual_seed(23)
    student = 2 * torch.randn(6, 9, generator=generator, dtype=F64)
    teacher = 2 * torch.randn(6, 9, generator=generator, dtype=F64)

    def torch_batchmean(s: Tensor) -> Tensor:
        return F.kl_div(
            F.log_softmax(s / temperature, dim=-1),
            F.log_softmax(teacher / temperature, dim=-1),
            reduction="batchmean",
            log_target=True,
        )

    mean = _loss_and_grad(lambda s: kl_divergence(s, teacher, temperature), student)
    expected_mean = _loss_and_grad(torch_batchmean, student)
    _assert_exact(mean[0], expected_mean[0])
    _assert_exact(mean[1], expected_mean[1])

    per_row = kl_divergence(student, teacher, temperature, reduction="none")
    expected_rows = _torch_kl_rows(student, teacher, temperature)
    _assert_exact(per_row, expected_rows)
    total = kl_divergence(student, teacher, temperature, reduction="sum")
    _assert_exact(total, expected_rows.sum())

    leading = kl_divergence(student.reshape(2, 3, 9), teacher.reshape(2, 3, 9), temperature, "none")
    _assert_exact(leading, expected_rows.reshape(2, 3))


def test_kl_divergence_ignores_classes_the_teacher_rules_out() -> None:
    student = torch.tensor([[0.5, -1.0, 2.0, 0.0]], dtype=F64)
    teacher = torch.tensor([[1.0, 0.0, -2.0, -math.inf]], dtype=F64)

    loss, grad = _loss_and_grad(lambda s: kl_divergence(s, teacher), student)

    # Without class 3 the teacher is unchanged and the student's softmax loses one term.
    log_p_student = F.log_softmax(student, dim=-1)[:, :3]
    p_teacher = F.softmax(teacher[:, :3], dim=-1)
    expected = (p_teacher * (p_teacher.log() - log_p_student)).sum()
    _assert_exact(loss, expected)
    assert torch.isfinite(grad).all()


def test_distillation_loss_mixes_kl_over_scored_rows_with_cross_entropy() -> None:
    generator = torch.Generator().manual_seed(31)
    student = torch.randn(2, 4, 6, generator=generator, dtype=F64)
    teacher = torch.randn(2, 4, 6, generator=generator, dtype=F64)
    target = torch.randint(0, 6, (2, 4), generator=generator)
    target[1, :2] = -100
    temperature, alpha = 2.0, 0.3

    def expected_fn(s: Tensor) -> Tensor:
        scored = target != -100
        kl = _torch_kl_rows(s, teacher, temperature)[scored].mean()
        hard = F.cross_entropy(s.reshape(-1, 6), target.reshape(-1))
        return alpha * temperature**2 * kl + (1 - alpha) * hard

    ours = _loss_and_grad(
        lambda s: distillation_loss(s, teacher, target, temperature, alpha), student
    )
    expected = _loss_and_grad(expected_fn, student)

    _assert_exact(ours[0], expected[0])
    _assert_exact(ours[1], expected[1])


def test_distillation_loss_over_nothing_scored_is_zero_with_zero_gradient() -> None:
    student = torch.randn(3, 5, dtype=F64)
    teacher = torch.randn(3, 5, dtype=F64)

    loss, grad = _loss_and_grad(
        lambda s: distillation_loss(s, teacher, torch.full((3,), -100), 2.0), student
    )

    assert loss.item() == 0.0
    assert torch.equal(grad, torch.zeros_like(student))
