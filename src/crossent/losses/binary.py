"""Binary cross-entropy on logits (the yes/no case), as PyTorch's ``*_with_logits``."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from crossent.kernels import compute_dtype
from crossent.losses._checks import Reduction, check_floating, check_reduction, check_same_shape
from crossent.losses._mean import mean_denominator


def binary_cross_entropy(
    logits: Tensor,
    target: Tensor,
    weight: Tensor | None = None,
    pos_weight: Tensor | None = None,
    reduction: Reduction = "mean",
) -> Tensor:
    """Binary cross-entropy between logits and targets in [0, 1], in nats.

    Per element: ``-[pos_weight * y * log(sigmoid(x)) + (1 - y) * log(1 - sigmoid(x))] * weight``,
    computed as ``(1 - y) * x - (1 + (pos_weight - 1) * y) * logsigmoid(x)`` so that logits of any
    magnitude are exact. fp16 and bf16 inputs are computed in fp32; the loss has the logits' dtype.
    Agrees with ``torch.nn.functional.binary_cross_entropy_with_logits``; the mean of an empty input
    is 0, not NaN (see :mod:`crossent.losses.cross_entropy`).

    Args:
        logits: any shape, floating point.
        target: same shape as ``logits``, probabilities in [0, 1] (hard 0/1 labels or soft).
        weight: broadcastable to ``logits``; rescales each element's loss.
        pos_weight: broadcastable along the last dimension; weight of the positive term, e.g.
            ``negatives / positives`` per class for imbalanced labels.
        reduction: ``"none"``, ``"sum"`` or ``"mean"`` (over all elements).

    Example:
        >>> round(binary_cross_entropy(torch.tensor([0.0]), torch.tensor([1.0])).item(), 4)
        0.6931
    """
    check_floating("logits", logits)
    check_floating("target", target)
    check_same_shape("logits", logits, "target", target)
    check_reduction(reduction)
    for name, extra in (("weight", weight), ("pos_weight", pos_weight)):
        if extra is None:
            continue
        check_floating(name, extra)
        try:
            shape = torch.broadcast_shapes(extra.shape, logits.shape)  # type: ignore[no-untyped-call]
        except RuntimeError:
            shape = None
        if shape != logits.shape:  # broadcasting may not enlarge the loss beyond the logits
            raise ValueError(
                f"{name} of shape {tuple(extra.shape)} does not broadcast to the logits' shape "
                f"{tuple(logits.shape)}"
            )
    outside = (target < 0) | (target > 1) | target.isnan()
    if bool(outside.any()):
        position = tuple(int(i) for i in outside.nonzero()[0].tolist())
        raise ValueError(
            f"binary target must be a probability in [0, 1], got {float(target[position])}"
            + (f" at position {position}" if position else "")
        )

    dtype = compute_dtype(logits.dtype)
    x = logits.to(dtype)
    y = target.to(dtype)
    log_weight = 1 + (pos_weight.to(dtype) - 1) * y if pos_weight is not None else 1.0
    loss = (1 - y) * x - log_weight * F.logsigmoid(x)
    if weight is not None:
        loss = loss * weight.to(dtype)
    if reduction == "sum":
        loss = loss.sum()
    elif reduction == "mean":
        loss = loss.sum() / mean_denominator(loss.numel())
    return loss.to(logits.dtype)
