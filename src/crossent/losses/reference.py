"""crossent's textbook oracle: every loss written as plainly as the formula, in float64.

This module has two jobs. The test suite uses it as the ground truth that the optimised losses are
compared against, and the explainer uses it to show, step by step, how logits become a loss. It
therefore shares no code with the optimised implementations: each function is the formula from the
textbook, one line per term, one Python branch per option, computed in float64.

It trades speed and memory for plainness: it materialises full ``[..., V]`` float64 tensors
(probabilities, log-probabilities, per-class terms) that the fast paths never build, so use it on
small inputs only.

Conventions shared with the rest of crossent: the class dimension is last (logits ``[..., V]``),
class-index targets are ``[...]`` integers, probability targets are ``[..., V]`` floats, and
every loss is in nats (divide by ``ln 2`` for bits).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from crossent.losses._checks import (
    Reduction,
    check_class_target,
    check_class_weight,
    check_floating,
    check_in_range,
    check_logits,
    check_non_negative,
    check_positive,
    check_reduction,
    check_same_shape,
)


@dataclass(frozen=True)
class SixSteps:
    """The six steps from logits to the cross-entropy loss, each kept as a float64 tensor.

    Attributes:
        logits: Step 1, the raw scores, ``[..., V]``.
        probas: Step 2, ``softmax(logits, -1)``, ``[..., V]``; each row sums to 1.
        target_probas: Step 3, the probability of each target token, ``[...]``.
        log_probas: Step 4, ``log(target_probas)``, ``[...]``, in nats (all <= 0).
        avg_log_probas: Step 5, the mean of ``log_probas``, a scalar in nats.
        neg_avg_log_probas: Step 6, ``-avg_log_probas``: the cross-entropy loss in nats, a scalar.
    """

    logits: Tensor
    probas: Tensor
    target_probas: Tensor
    log_probas: Tensor
    avg_log_probas: Tensor
    neg_avg_log_probas: Tensor


def six_steps(logits: Tensor, targets: Tensor) -> SixSteps:
    """Compute the cross-entropy the way the textbook does: softmax, pick, log, average, negate.

    This is the literal recipe, probabilities first and logarithm second. It is deliberately not
    computed in log space, so it underflows for extreme logits: once a target's probability rounds
    to 0 in float64 (a logit gap beyond about 745 nats), ``log_probas`` is ``-inf`` and the loss is
    ``inf``. :func:`cross_entropy` below is the stable formulation of the same number.

    The tensors are float64 copies that stay connected to ``logits`` in the autograd graph.

    Args:
        logits: Raw scores ``[..., V]``, any floating dtype.
        targets: Class indices ``[...]`` (the leading shape of ``logits``), each in ``[0, V)``;
            there is no ignore_index in the textbook recipe.

    Returns:
        A :class:`SixSteps` holding each step's tensor; ``neg_avg_log_probas`` is the loss in nats.

    Raises:
        ValueError: If the shapes disagree, a target is outside the vocabulary, or there are no
            targets (the mean of nothing is undefined).

    Example:
        >>> probabilities = torch.tensor([[0.2, 0.7, 0.1]])  # dog, cat, fish
        >>> steps = six_steps(probabilities.log(), torch.tensor([1]))  # the answer is cat
        >>> round(steps.neg_avg_log_probas.item(), 6)
        0.356675
    """
    check_logits("logits", logits)
    num_classes = logits.shape[-1]
    if targets.shape != logits.shape[:-1]:
        raise ValueError(
            f"targets must have the leading shape of logits {tuple(logits.shape[:-1])}, "
            f"got {tuple(targets.shape)}"
        )
    if targets.numel() == 0:
        raise ValueError("six_steps needs at least one target: the mean of no tokens is undefined")
    outside = (targets < 0) | (targets >= num_classes)
    if bool(outside.any()):
        position = tuple(int(i) for i in outside.nonzero()[0].tolist())
        raise ValueError(
            f"target {int(targets[position])} is outside the vocabulary (size {num_classes}) "
            f"at position {position}"
        )

    step1_logits = logits.to(torch.float64, copy=True)  # (..., V)
    step2_probas = torch.softmax(step1_logits, dim=-1)  # (..., V)
    step3_target_probas = step2_probas.gather(-1, targets.long().unsqueeze(-1)).squeeze(-1)  # (...)
    step4_log_probas = torch.log(step3_target_probas)  # (...)
    step5_avg_log_probas = torch.mean(step4_log_probas)  # ()
    step6_neg_avg_log_probas = step5_avg_log_probas * -1  # ()
    return SixSteps(
        logits=step1_logits,
        probas=step2_probas,
        target_probas=step3_target_probas,
        log_probas=step4_log_probas,
        avg_log_probas=step5_avg_log_probas,
        neg_avg_log_probas=step6_neg_avg_log_probas,
    )


def cross_entropy(
    logits: Tensor,
    target: Tensor,
    weight: Tensor | None = None,
    ignore_index: int = -100,
    reduction: Reduction = "mean",
    label_smoothing: float = 0.0,
    *,
    z_loss: float = 0.0,
    softcap: float | None = None,
) -> Tensor:
    """Cross-entropy in float64, option by option, with PyTorch's semantics and the class dim last.

    With ``log p_i = z_i - logsumexp(z_i)`` for the logits ``z_i`` of token ``i``, ``eps`` the label
    smoothing and ``w`` the class weights (all ones when ``weight`` is None):

    * class-index target ``y_i``:
      ``loss_i = (1 - eps) * w[y_i] * (-log p_i[y_i]) + eps / V * sum_c w[c] * (-log p_i[c])``;
    * probability target ``q_i``, mixed as ``q'_i = (1 - eps) * q_i + eps / V``:
      ``loss_i = -sum_c w[c] * q'_i[c] * log p_i[c]``, where a class with zero target mass
      contributes exactly 0, even when its ``log p`` is ``-inf``;
    * ``z_loss`` adds ``z_loss * logsumexp(z_i) ** 2`` per scored token;
    * ``softcap`` first replaces the logits by ``softcap * tanh(z / softcap)``; everything above,
      the z-loss included, uses the capped logits.

    A token is scored unless its class target equals ``ignore_index``; probability targets score
    every row. Ignored tokens contribute 0 to every reduction.

    Reductions: ``"none"`` returns the per-token loss ``[...]`` (0 at ignored tokens), ``"sum"``
    its sum, and ``"mean"`` divides the cross-entropy sum by the sum of ``w[y_i]`` over scored
    tokens (their count without weights) for class targets, or by the number of rows for
    probability targets, and adds the z-loss averaged over the scored tokens (an unweighted
    count). When nothing is scored (every target ignored, or an empty input), ``"mean"`` returns 0
    with zero gradients rather than PyTorch's NaN.

    Args:
        logits: Raw scores ``[..., V]``, any floating dtype; computed in float64 and differentiable.
        target: Class indices ``[...]`` (integer dtype, each in ``[0, V)`` or ``ignore_index``) or
            probabilities ``[..., V]`` (floating dtype, the shape of ``logits``).
        weight: Optional per-class weights ``[V]``.
        ignore_index: Class target whose token is not scored; unused for probability targets.
        reduction: ``"none"``, ``"sum"`` or ``"mean"``.
        label_smoothing: ``eps`` in ``[0, 1]``.
        z_loss: Coefficient of the squared log-normaliser, ``>= 0``.
        softcap: Positive cap for ``tanh`` soft-capping of the logits, or None for no capping.

    Returns:
        The loss in nats, float64: ``[...]`` for ``"none"``, a scalar otherwise.

    Raises:
        ValueError: On an unknown reduction, out-of-range options, mismatched shapes or a target
            outside the vocabulary.
        TypeError: On non-floating logits or a boolean or complex ``target``.

    Example:
        >>> probabilities = torch.tensor([[0.2, 0.7, 0.1]])  # dog, cat, fish
        >>> loss = cross_entropy(probabilities.log(), torch.tensor([1]))  # the answer is cat
        >>> round(loss.item(), 6)
        0.356675
    """
    check_reduction(reduction)
    check_logits("logits", logits)
    check_in_range("label_smoothing", label_smoothing, 0.0, 1.0)
    check_non_negative("z_loss", z_loss)
    if softcap is not None:
        check_positive("softcap", softcap)
    num_classes = logits.shape[-1]
    check_class_weight(weight, num_classes)

    z = logits.to(torch.float64)  # (..., V)
    if softcap is not None:
        z = softcap * torch.tanh(z / softcap)
    log_normaliser = torch.logsumexp(z, dim=-1)  # (...)
    log_p = z - log_normaliser.unsqueeze(-1)  # (..., V)
    if weight is None:
        class_weight = torch.ones(num_classes, dtype=torch.float64, device=z.device)
    else:
        class_weight = weight.to(device=z.device, dtype=torch.float64)

    if torch.is_floating_point(target):
        loss, scored, denominator = _probability_target_loss(
            log_p, target, class_weight, label_smoothing
        )
    else:
        loss, scored, denominator = _class_target_loss(
            log_p, target, class_weight, ignore_index, label_smoothing
        )

    if z_loss > 0:
        z_term = torch.where(scored, z_loss * log_normaliser**2, 0.0)  # (...)
    else:
        z_term = torch.zeros_like(loss)

    if reduction == "none":
        return loss + z_term
    if reduction == "sum":
        return loss.sum() + z_term.sum()
    scored_count = scored.sum()
    if scored_count == 0:
        # Every term is exactly 0 here, so this is a 0 that still carries (zero) gradients.
        return loss.sum() + z_term.sum()
    return loss.sum() / denominator + z_term.sum() / scored_count


def _class_target_loss(
    log_p: Tensor, target: Tensor, class_weight: Tensor, ignore_index: int, label_smoothing: float
) -> tuple[Tensor, Tensor, Tensor]:
    """Per-token loss ``[...]``, scored mask ``[...]`` and mean denominator for class targets."""
    num_classes = log_p.shape[-1]
    if target.shape != log_p.shape[:-1]:
        raise ValueError(
            f"class-index target must have the leading shape of logits {tuple(log_p.shape[:-1])}, "
            f"got {tuple(target.shape)}"
        )
    check_class_target(target, num_classes, ignore_index)
    target = target.to(log_p.device).long()

    scored = target != ignore_index  # (...)
    # Ignored positions look up class 0 so that the gather is valid; their loss is zeroed below.
    safe_target = torch.where(scored, target, 0)  # (...)
    target_nll = -log_p.gather(-1, safe_target.unsqueeze(-1)).squeeze(-1)  # (...)
    target_weight = class_weight[safe_target]  # (...)

    loss = target_weight * target_nll
    if label_smoothing > 0:
        # Every class is a target with mass eps / V, weighted by its own class weight.
        smooth_nll = -(class_weight * log_p).sum(dim=-1)  # (...)
        loss = (1 - label_smoothing) * loss + label_smoothing / num_classes * smooth_nll
    loss = torch.where(scored, loss, 0.0)
    denominator = torch.where(scored, target_weight, 0.0).sum()
    return loss, scored, denominator


def _probability_target_loss(
    log_p: Tensor, target: Tensor, class_weight: Tensor, label_smoothing: float
) -> tuple[Tensor, Tensor, Tensor]:
    """Per-row loss, scored mask (all true) and mean denominator for probability targets."""
    num_classes = log_p.shape[-1]
    check_same_shape("logits", log_p, "probability target", target)
    q = target.to(device=log_p.device, dtype=torch.float64)  # (..., V)
    if label_smoothing > 0:
        q = (1 - label_smoothing) * q + label_smoothing / num_classes

    # 0 * log 0 = 0: a class the target gives no mass contributes nothing, even if log p is -inf.
    # Masking log p (not the product) keeps the gradient free of 0 * inf as well.
    log_p_where_mass = torch.where(q != 0, log_p, 0.0)  # (..., V)
    loss = -(class_weight * q * log_p_where_mass).sum(dim=-1)  # (...)
    scored = torch.ones(loss.shape, dtype=torch.bool, device=loss.device)
    denominator = torch.tensor(float(loss.numel()), dtype=torch.float64, device=loss.device)
    return loss, scored, denominator


def binary_cross_entropy(
    logits: Tensor,
    target: Tensor,
    weight: Tensor | None = None,
    pos_weight: Tensor | None = None,
    reduction: Reduction = "mean",
) -> Tensor:
    """Binary cross-entropy on logits in float64, the textbook formula written with logsigmoid.

    Per element, with ``sigmoid(x)`` the predicted probability of the positive class::

        loss = -[pos_weight * y * log sigmoid(x) + (1 - y) * log(1 - sigmoid(x))] * weight

    where ``log(1 - sigmoid(x))`` is computed as ``logsigmoid(-x)``, which never forms the
    difference ``1 - sigmoid(x)``. Semantics follow
    ``torch.nn.functional.binary_cross_entropy_with_logits``.

    Args:
        logits: Raw scores ``[...]``, any floating dtype; computed in float64 and differentiable.
        target: Targets in ``[0, 1]`` with the shape of ``logits`` (soft labels allowed).
        weight: Optional per-element weight, broadcast against ``logits``.
        pos_weight: Optional weight of the positive term, broadcast along the last dimension
            (typically ``[C]`` for ``C`` independent labels).
        reduction: ``"none"`` (the per-element loss), ``"sum"`` or ``"mean"`` (over all elements;
            an empty input gives 0, not NaN).

    Returns:
        The loss in nats, float64: the broadcast shape for ``"none"``, a scalar otherwise.
    """
    check_reduction(reduction)
    check_floating("logits", logits)
    check_same_shape("logits", logits, "target", target)

    x = logits.to(torch.float64)
    y = target.to(device=x.device, dtype=torch.float64)
    log_p_positive = F.logsigmoid(x)  # log sigmoid(x)
    log_p_negative = F.logsigmoid(-x)  # log(1 - sigmoid(x))

    positive_term = y * log_p_positive
    if pos_weight is not None:
        positive_term = pos_weight.to(device=x.device, dtype=torch.float64) * positive_term
    loss = -(positive_term + (1 - y) * log_p_negative)
    if weight is not None:
        loss = loss * weight.to(device=x.device, dtype=torch.float64)

    if reduction == "none":
        return loss
    if reduction == "sum":
        return loss.sum()
    if loss.numel() == 0:
        return loss.sum()
    return loss.mean()


def kl_divergence(
    student_logits: Tensor,
    teacher_logits: Tensor,
    temperature: float = 1.0,
    reduction: Reduction = "mean",
) -> Tensor:
    """KL(teacher || student) per row at a temperature, in float64.

    Both distributions are ``softmax(z / T)`` over the last dimension, and per row::

        KL = sum_c p_teacher[c] * (log p_teacher[c] - log p_student[c])

    where a class with ``p_teacher[c] == 0`` contributes exactly 0.

    Args:
        student_logits: Student scores ``[..., V]``, any floating dtype.
        teacher_logits: Teacher scores ``[..., V]``, the same shape.
        temperature: ``T > 0``; both logits are divided by it before the softmax.
        reduction: ``"none"`` (per row, ``[...]``), ``"sum"``, or ``"mean"`` (the sum divided by
            the number of rows, PyTorch's ``"batchmean"`` for 2-D input; 0 for no rows).

    Returns:
        The divergence in nats, float64.
    """
    check_reduction(reduction)
    check_logits("student_logits", student_logits)
    check_logits("teacher_logits", teacher_logits)
    check_same_shape("student_logits", student_logits, "teacher_logits", teacher_logits)
    check_positive("temperature", temperature)

    per_row = _kl_per_row(student_logits, teacher_logits, temperature)  # (...)
    if reduction == "none":
        return per_row
    if reduction == "sum":
        return per_row.sum()
    if per_row.numel() == 0:
        return per_row.sum()
    return per_row.sum() / per_row.numel()


def _kl_per_row(student_logits: Tensor, teacher_logits: Tensor, temperature: float) -> Tensor:
    log_p_student = torch.log_softmax(student_logits.to(torch.float64) / temperature, dim=-1)
    log_p_teacher = torch.log_softmax(teacher_logits.to(torch.float64) / temperature, dim=-1)
    p_teacher = torch.exp(log_p_teacher)  # (..., V)
    # 0 * log 0 = 0; masking the log-ratio (not the product) keeps gradients free of 0 * inf.
    log_ratio = torch.where(p_teacher > 0, log_p_teacher - log_p_student, 0.0)  # (..., V)
    return (p_teacher * log_ratio).sum(dim=-1)  # (...)


def distillation_loss(
    student_logits: Tensor,
    teacher_logits: Tensor,
    target: Tensor,
    temperature: float = 1.0,
    alpha: float = 0.5,
    ignore_index: int = -100,
) -> Tensor:
    """Knowledge-distillation loss: a mix of the soft (teacher) and hard (label) objectives.

    ::

        loss = alpha * T**2 * mean_i KL_T(teacher_i || student_i)
               + (1 - alpha) * cross_entropy(student, target)

    Both means run over the scored rows only (those whose target is not ``ignore_index``); the
    ``T**2`` keeps the soft term's gradient on the scale of the hard term's as ``T`` grows. When
    nothing is scored the loss is 0 with zero gradients.

    Args:
        student_logits: Student scores ``[..., V]``, any floating dtype.
        teacher_logits: Teacher scores ``[..., V]``, the same shape.
        target: Class indices ``[...]``, each in ``[0, V)`` or ``ignore_index``.
        temperature: ``T > 0`` for the KL term; the cross-entropy term uses ``T = 1``.
        alpha: Weight of the KL term, in ``[0, 1]``.
        ignore_index: Target value whose row is not scored by either term.

    Returns:
        The loss in nats, a float64 scalar.
    """
    check_logits("student_logits", student_logits)
    check_logits("teacher_logits", teacher_logits)
    check_same_shape("student_logits", student_logits, "teacher_logits", teacher_logits)
    check_positive("temperature", temperature)
    check_in_range("alpha", alpha, 0.0, 1.0)

    hard = cross_entropy(student_logits, target, ignore_index=ignore_index)  # validates target
    kl = _kl_per_row(student_logits, teacher_logits, temperature)  # (...)
    scored = target.to(kl.device) != ignore_index
    kl = torch.where(scored, kl, 0.0)
    # With nothing scored the sum is exactly 0, and 0 / 1 keeps it so.
    soft = kl.sum() / scored.sum().clamp(min=1)
    return alpha * temperature**2 * soft + (1 - alpha) * hard
