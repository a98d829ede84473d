"""KL divergence between two models' next-token distributions, and knowledge distillation.

Knowledge distillation is one of cross-entropy's uses: a small student is trained to match a
large teacher's softened distribution as well as the true next token (Hinton et al., 2015).
"""

from __future__ import annotations

from typing import Literal, get_args

import torch
from torch import Tensor

from crossent.kernels import compute_dtype
from crossent.losses._checks import (
    check_in_range,
    check_logits,
    check_positive,
    check_reduction,
    check_same_shape,
)
from crossent.losses._mean import mean_denominator
from crossent.losses.cross_entropy import cross_entropy

# PyTorch's F.kl_div also offers "batchmean", the reduction that matches the definition of KL.
KLReduction = Literal["none", "mean", "sum", "batchmean"]


def kl_divergence(
    student_logits: Tensor,
    teacher_logits: Tensor,
    temperature: float = 1.0,
    reduction: KLReduction = "mean",
    *,
    mask: Tensor | None = None,
) -> Tensor:
    """KL(teacher || student) per token, both softened by ``temperature``, in nats.

    ``sum_c p_t(c) * (log p_t(c) - log p_s(c))`` with ``p = softmax(logits / temperature)`` over
    the last dimension. Classes the teacher gives probability 0 (``-inf`` logits) contribute 0.
    Agrees with ``F.kl_div(log_softmax(s / T), log_softmax(t / T), log_target=True)``: its
    ``"sum"`` and ``"batchmean"`` are ours, and our ``"mean"`` (over tokens) is its
    ``"batchmean"`` for 2-D input; unlike ``F.kl_div``, ``reduction="none"`` gives one value per
    token (``[...]``), not per class, and ``"mean"`` divides by tokens, not by tokens times
    classes. Computed in fp32 for fp16/bf16 logits; gradients flow into both arguments (wrap the
    teacher in ``torch.no_grad()`` to keep it fixed).

    Args:
        student_logits: ``[..., V]``.
        teacher_logits: ``[..., V]``, the same shape.
        temperature: > 0; higher softens both distributions.
        reduction: ``"none"`` (``[...]``), ``"sum"``, ``"mean"`` over the scored tokens, or
            ``"batchmean"``, PyTorch's: the sum divided by the size of the logits' first
            dimension (``B`` for ``[B, T, V]``; for a single ``[V]`` distribution that is ``V``,
            as in ``F.kl_div``).
        mask: ``[...]`` bool, the tokens to score (all when None); unscored tokens give 0 and the
            mean over no token is 0. ``"batchmean"`` still divides by the first dimension's size,
            masked-in or not, so a mask changes only its sum; an empty first dimension gives 0.

    Example:
        >>> same = torch.tensor([[1.0, 2.0, 3.0]])
        >>> kl_divergence(same, same).item()
        0.0
    """
    _check_pair(student_logits, teacher_logits, temperature)
    check_reduction(reduction, get_args(KLReduction))
    if mask is not None:
        if mask.dtype != torch.bool:
            raise TypeError(f"mask must be a bool tensor (True = scored), got dtype {mask.dtype}")
        if mask.shape != student_logits.shape[:-1]:
            raise ValueError(
                f"mask must have the logits' shape without the class dimension, "
                f"{tuple(student_logits.shape[:-1])}, got {tuple(mask.shape)}"
            )

    dtype = compute_dtype(student_logits.dtype)
    log_student = torch.log_softmax(student_logits.to(dtype) / temperature, dim=-1)
    log_teacher = torch.log_softmax(teacher_logits.to(dtype) / temperature, dim=-1)
    teacher_probs = log_teacher.exp()
    # where() on both sides keeps -inf - -inf (a class both rule out) from turning into NaN.
    present = teacher_probs > 0
    gap = torch.where(present, log_teacher, 0.0) - torch.where(present, log_student, 0.0)
    token_kl = torch.where(present, teacher_probs * gap, 0.0).sum(-1)
    if mask is not None:
        token_kl = torch.where(mask, token_kl, 0.0)
    if reduction == "sum":
        token_kl = token_kl.sum()
    elif reduction == "mean" and mask is not None:
        token_kl = token_kl.sum() / mean_denominator(mask.sum()).to(dtype)
    elif reduction == "mean":
        token_kl = token_kl.sum() / mean_denominator(token_kl.numel())
    elif reduction == "batchmean":
        token_kl = token_kl.sum() / mean_denominator(student_logits.shape[0])
    return token_kl.to(student_logits.dtype)


def _check_pair(student_logits: Tensor, teacher_logits: Tensor, temperature: float) -> None:
    check_logits("student_logits", student_logits)
    check_logits("teacher_logits", teacher_logits)
    check_same_shape("student_logits", student_logits, "teacher_logits", teacher_logits)
    check_positive("temperature", temperature)


def distillation_loss(
    student_logits: Tensor,
    teacher_logits: Tensor,
    target: Tensor,
    temperature: float = 1.0,
    alpha: float = 0.5,
    ignore_index: int = -100,
) -> Tensor:
    """Knowledge distillation: ``alpha * T**2 * KL + (1 - alpha) * cross-entropy``, in nats.

    The soft term is :func:`kl_divergence` at temperature ``T``, scaled by ``T**2`` so its
    gradients keep their size as ``T`` changes (Hinton et al.); the hard term is
    :func:`crossent.cross_entropy` against the true next tokens at temperature 1. Both are means
    over the tokens whose target is not ``ignore_index``.

    Args:
        student_logits: ``[..., V]``, the model being trained.
        teacher_logits: ``[..., V]``, usually computed under ``torch.no_grad()``.
        target: ``[...]`` class indices.
        temperature: > 0, softens both distributions in the soft term.
        alpha: in [0, 1], the weight of the soft (teacher) term.
        ignore_index: targets equal to this are scored by neither term.

    Example:
        >>> logits = torch.tensor([[2.0, 0.5, -1.0]])
        >>> hard = distillation_loss(logits, logits, torch.tensor([0]), alpha=0.0)
        >>> torch.allclose(hard, cross_entropy(logits, torch.tensor([0])))
        True
    """
    check_in_range("alpha", alpha, 0.0, 1.0)
    _check_pair(student_logits, teacher_logits, temperature)
    if torch.is_floating_point(target):
        raise TypeError(
            f"distillation target must be class indices (an integer tensor of shape "
            f"{tuple(student_logits.shape[:-1])}), got dtype {target.dtype}; the teacher "
            f"supplies the soft targets"
        )
    hard = cross_entropy(student_logits, target, ignore_index=ignore_index)
    soft = kl_divergence(
        student_logits, teacher_logits, temperature, "mean", mask=target != ignore_index
    )
    return alpha * temperature**2 * soft + (1 - alpha) * hard
