"""Properties every loss must have whatever the input: each checked against mathematics, not values.

Shift invariance of the softmax, non-negativity, the decomposition of cross-entropy into entropy
plus KL divergence, label smoothing as a mixed target, and fp32 staying close to float64. Inputs
are small float64 tensors drawn by Hypothesis unless a property is about another dtype.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from torch import Tensor

from crossent import binary_cross_entropy, cross_entropy, kl_divergence, reference

PROPERTY = settings(max_examples=50, deadline=None)
REDUCTIONS = st.sampled_from(["none", "sum", "mean"])
IGNORE = -100


def _assert_close(actual: Tensor, expected: Tensor, tolerance: float = 1e-9) -> None:
    torch.testing.assert_close(actual, expected, rtol=tolerance, atol=tolerance)


@st.composite
def _logits(
    draw: st.DrawFn, max_rows: int = 4, max_classes: int = 8, bound: float = 30.0
) -> Tensor:
    """``[N, V]`` float64 logits, N in [1, max_rows] and V in [2, max_classes]."""
    rows = draw(st.integers(1, max_rows))
    classes = draw(st.integers(2, max_classes))
    values = draw(
        arrays(np.float64, (rows, classes), elements=st.floats(-bound, bound, allow_nan=False))
    )
    return torch.from_numpy(values)


@dataclass(frozen=True)
class _Case:
    logits: Tensor
    target: Tensor
    weight: Tensor | None
    label_smoothing: float


@st.composite
def _cases(draw: st.DrawFn) -> _Case:
    """Logits with class targets (some ignored) or probability targets, optional class weights."""
    logits = draw(_logits())
    rows, classes = logits.shape
    if draw(st.booleans()):
        mass = draw(arrays(np.float64, (rows, classes), elements=st.floats(0, 1)))
        mass[:, 0] += 1e-3  # keep every row's total positive
        target = torch.from_numpy(mass / mass.sum(-1, keepdims=True))
    else:
        target = torch.tensor(
            draw(st.lists(st.sampled_from([*range(classes), IGNORE]), min_size=rows, max_size=rows))
        )
    weight = None
    if draw(st.booleans()):
        weight = torch.tensor(
            draw(st.lists(st.floats(0.0, 5.0), min_size=classes, max_size=classes)),
            dtype=torch.float64,
        )
    return _Case(logits, target, weight, draw(st.sampled_from([0.0, 0.1, 0.5, 1.0])))


@PROPERTY
@given(case=_cases(), shift=st.floats(-1e3, 1e3), reduction=REDUCTIONS)
def test_adding_a_constant_to_the_logits_changes_nothing(
    case: _Case, shift: float, reduction: str
) -> None:
    def loss(logits: Tensor) -> Tensor:
        return cross_entropy(
            logits,
            case.target,
            case.weight,
            IGNORE,
            reduction,  # type: ignore[arg-type]
            case.label_smoothing,
        )

    _assert_close(loss(case.logits + shift), loss(case.logits))


@PROPERTY
@given(
    student=_logits(),
    data=st.data(),
    shifts=st.tuples(st.floats(-1e3, 1e3), st.floats(-1e3, 1e3)),
    temperature=st.floats(0.25, 8.0),
    reduction=REDUCTIONS,
)
def test_kl_divergence_ignores_constant_shifts(
    student: Tensor,
    data: st.DataObject,
    shifts: tuple[float, float],
    temperature: float,
    reduction: str,
) -> None:
    teacher = torch.from_numpy(
        data.draw(arrays(np.float64, student.shape, elements=st.floats(-30, 30)))
    )

    def kl(student: Tensor, teacher: Tensor) -> Tensor:
        return kl_divergence(student, teacher, temperature, reduction)  # type: ignore[arg-type]

    _assert_close(kl(student + shifts[0], teacher + shifts[1]), kl(student, teacher))


@PROPERTY
@given(
    case=_cases(),
    reduction=REDUCTIONS,
    z_loss=st.sampled_from([0.0, 1e-4, 0.5]),
    softcap=st.sampled_from([None, 0.5, 5.0, 50.0]),
)
def test_cross_entropy_is_never_negative(
    case: _Case, reduction: str, z_loss: float, softcap: float | None
) -> None:
    loss = cross_entropy(
        case.logits,
        case.target,
        case.weight,
        IGNORE,
        reduction,  # type: ignore[arg-type]
        case.label_smoothing,
        z_loss=z_loss,
        softcap=softcap,
    )
    assert bool((loss >= -1e-12).all()), loss


@PROPERTY
@given(
    logits=_logits(),
    data=st.data(),
    reduction=REDUCTIONS,
    weighted=st.booleans(),
    pos_weighted=st.booleans(),
)
def test_binary_cross_entropy_is_never_negative(
    logits: Tensor, data: st.DataObject, reduction: str, weighted: bool, pos_weighted: bool
) -> None:
    rows, classes = logits.shape
    target = torch.from_numpy(
        data.draw(arrays(np.float64, (rows, classes), elements=st.floats(0, 1)))
    )
    positive = st.floats(0.0, 5.0)
    weight = torch.from_numpy(data.draw(arrays(np.float64, (rows, 1), elements=positive)))
    pos_weight = torch.from_numpy(data.draw(arrays(np.float64, (classes,), elements=positive)))
    loss = binary_cross_entropy(
        logits,
        target,
        weight if weighted else None,
        pos_weight if pos_weighted else None,
        reduction,  # type: ignore[arg-type]
    )
    assert bool((loss >= -1e-12).all()), loss


@PROPERTY
@given(
    student=_logits(),
    data=st.data(),
    temperature=st.floats(0.25, 8.0),
    ruled_out=st.booleans(),
)
def test_cross_entropy_is_entropy_plus_kl_divergence(
    student: Tensor, data: st.DataObject, temperature: float, ruled_out: bool
) -> None:
    """CE(p_teacher, p_student) = H(p_teacher) + KL(p_teacher || p_student), per token."""
    teacher = torch.from_numpy(
        data.draw(arrays(np.float64, student.shape, elements=st.floats(-30, 30)))
    )
    if ruled_out:  # the teacher gives class 0 probability 0; entropy and KL must agree on 0 log 0
        teacher[:, 0] = float("-inf")
    teacher_probs = torch.softmax(teacher / temperature, dim=-1)
    entropy = torch.special.entr(teacher_probs).sum(-1)

    cross = cross_entropy(student / temperature, teacher_probs, reduction="none")
    divergence = kl_divergence(student, teacher, temperature, "none")
    _assert_close(cross, entropy + divergence)


@PROPERTY
@given(
    logits=_logits(),
    data=st.data(),
    smoothing=st.floats(0.0, 1.0),
    reduction=REDUCTIONS,
    weighted=st.booleans(),
    ignore_some=st.booleans(),
)
def test_label_smoothing_is_a_mixed_target(
    logits: Tensor,
    data: st.DataObject,
    smoothing: float,
    reduction: str,
    weighted: bool,
    ignore_some: bool,
) -> None:
    """Class target y with smoothing eps = probability target (1 - eps) * one_hot(y) + eps / V.

    Per token the two losses are the same number, weights or not: both are
    ``(1 - eps) * w[y] * (-log p[y]) + eps / V * sum_c w[c] * (-log p[c])``; an ignored token is
    an all-zero probability row (loss 0). So ``"none"`` and ``"sum"`` agree exactly. The means
    divide the same total differently: the class-index mean by ``sum of w[y]`` over the scored
    tokens (their count without weights), the probability mean by the number of rows, so
    ``mean_class * sum(w[y]) == mean_probability * N``; equal means only without weights and
    ignored tokens.
    """
    rows, classes = logits.shape
    target = torch.tensor(
        data.draw(st.lists(st.integers(0, classes - 1), min_size=rows, max_size=rows))
    )
    if ignore_some:
        target[data.draw(st.integers(0, rows - 1))] = IGNORE
    weight = None
    if weighted:
        weight = torch.tensor(
            data.draw(st.lists(st.floats(0.1, 5.0), min_size=classes, max_size=classes)),
            dtype=torch.float64,
        )
    scored = target != IGNORE
    one_hot = F.one_hot(target.clamp(min=0), classes).double()
    mixed = torch.where(scored[:, None], (1 - smoothing) * one_hot + smoothing / classes, 0.0)

    smoothed = cross_entropy(logits, target, weight, IGNORE, reduction, smoothing)  # type: ignore[arg-type]
    as_probabilities = cross_entropy(logits, mixed, weight, reduction=reduction)  # type: ignore[arg-type]
    if reduction != "mean":
        _assert_close(smoothed, as_probabilities)
        return
    target_weight = weight[target.clamp(min=0)] if weight is not None else torch.ones(rows)
    class_denominator = torch.where(scored, target_weight, 0.0).sum().double()
    if class_denominator == 0:
        return  # nothing scored: the class-index mean is 0 by policy, a separate test's concern
    _assert_close(smoothed * class_denominator, as_probabilities * rows)
    if weight is None and not ignore_some:
        _assert_close(smoothed, as_probabilities)


@PROPERTY
@given(
    unit_logits=_logits(max_rows=6, max_classes=16, bound=1.0),
    scale=st.floats(1.0, 1e4),
    data=st.data(),
    smoothing=st.sampled_from([0.0, 0.1]),
)
def test_fp32_is_close_to_float64(
    unit_logits: Tensor, scale: float, data: st.DataObject, smoothing: float
) -> None:
    """fp32 logits up to 1e4 in size: the loss keeps fp32's relative precision, ~1e-7.

    The oracle is the float64 reference on the same fp32 values. A loss near 0 (a confident,
    correct prediction) is a difference of log-probabilities near 0, known to fp32's absolute
    resolution only, hence the absolute floor of 1e-6 nats.
    """
    rows, classes = unit_logits.shape
    logits = (unit_logits * scale).float()
    target = torch.tensor(
        data.draw(st.lists(st.integers(0, classes - 1), min_size=rows, max_size=rows))
    )
    leaf = logits.clone().requires_grad_(True)
    loss = cross_entropy(leaf, target, label_smoothing=smoothing)
    loss.backward()  # type: ignore[no-untyped-call]
    leaf64 = logits.double().requires_grad_(True)
    truth = reference.cross_entropy(leaf64, target, label_smoothing=smoothing)
    truth.backward()  # type: ignore[no-untyped-call]

    assert loss.dtype == torch.float32
    assert math.isclose(loss.item(), truth.item(), rel_tol=1e-5, abs_tol=1e-6)
    assert leaf.grad is not None
    assert leaf64.grad is not None
    torch.testing.assert_close(leaf.grad.double(), leaf64.grad, rtol=0.0, atol=1e-6)
