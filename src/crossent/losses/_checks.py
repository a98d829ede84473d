"""Argument checks shared by every loss: run before any arithmetic, with actionable messages.

Each check raises ``ValueError`` (or ``TypeError`` for a wrong dtype) naming the argument, the value
that is wrong and what was expected, so that nothing fails later with an opaque ``IndexError`` or a
CUDA device-side assert.
"""

from __future__ import annotations

from typing import Literal, get_args

import torch
from torch import Tensor

Reduction = Literal["none", "mean", "sum"]
REDUCTIONS: tuple[str, ...] = get_args(Reduction)


def check_reduction(reduction: str, allowed: tuple[str, ...] = REDUCTIONS) -> None:
    if reduction not in allowed:
        raise ValueError(f"unknown reduction {reduction!r}; expected one of {', '.join(allowed)}")


def check_floating(name: str, tensor: Tensor) -> None:
    if not torch.is_floating_point(tensor):
        raise TypeError(
            f"{name} must be a floating-point tensor, got dtype {tensor.dtype}; "
            f"convert with {name}.float()"
        )


def check_logits(name: str, logits: Tensor) -> None:
    check_floating(name, logits)
    if logits.ndim == 0:
        raise ValueError(f"{name} must have a class dimension last ([..., V]), got a scalar")
    if logits.shape[-1] == 0:
        raise ValueError(f"{name} has an empty class dimension (shape {tuple(logits.shape)})")


def check_same_shape(name_a: str, a: Tensor, name_b: str, b: Tensor) -> None:
    if a.shape != b.shape:
        raise ValueError(
            f"{name_a} and {name_b} must have the same shape, "
            f"got {tuple(a.shape)} and {tuple(b.shape)}"
        )


def check_in_range(name: str, value: float, low: float, high: float) -> None:
    if not low <= value <= high:
        raise ValueError(f"{name} must be in [{low}, {high}], got {value}")


def check_positive(name: str, value: float) -> None:
    if not value > 0:
        raise ValueError(f"{name} must be positive, got {value}")


def check_non_negative(name: str, value: float) -> None:
    if not value >= 0:
        raise ValueError(f"{name} must be non-negative, got {value}")


def check_class_weight(weight: Tensor | None, num_classes: int) -> None:
    if weight is None:
        return
    check_floating("weight", weight)
    if weight.shape != (num_classes,):
        raise ValueError(
            f"weight must have one entry per class, shape ({num_classes},), "
            f"got {tuple(weight.shape)}"
        )


def check_class_target(target: Tensor, num_classes: int, ignore_index: int) -> None:
    """Every target is a class in [0, num_classes) or ignore_index; name the first that is not."""
    if target.dtype == torch.bool or torch.is_floating_point(target) or target.is_complex():
        raise TypeError(f"class-index target must have an integer dtype, got {target.dtype}")
    outside = (target < 0) | (target >= num_classes)
    outside &= target != ignore_index
    if bool(outside.any()):
        position = tuple(int(i) for i in outside.nonzero()[0].tolist())
        value = int(target[position])
        where = f" at position {position}" if position else ""
        raise ValueError(
            f"target {value} is outside the vocabulary (size {num_classes}){where}; "
            f"targets must be in [0, {num_classes}) or equal ignore_index={ignore_index}"
        )


def check_loss_options(
    reduction: str, label_smoothing: float, z_loss: float, softcap: float | None = None
) -> None:
    """The options every cross-entropy shares: reduction, label smoothing, z-loss, soft-cap."""
    check_reduction(reduction)
    check_in_range("label_smoothing", label_smoothing, 0.0, 1.0)
    check_non_negative("z_loss", z_loss)
    if softcap is not None:
        check_positive("softcap", softcap)


def check_lm_head(
    hidden: Tensor, weight: Tensor, bias: Tensor | None, rows: str = "the vocabulary"
) -> None:
    """``hidden [..., d]``, ``weight [V, d]`` of the same dtype, ``bias [V]``.

    ``rows`` names what the weight's rows are, for the messages (a rank's shard, say).
    """
    check_floating("hidden", hidden)
    check_floating("weight", weight)
    if hidden.ndim == 0:
        raise ValueError("hidden must be [..., d], got a scalar")
    if weight.ndim != 2 or weight.shape[1] != hidden.shape[-1]:
        raise ValueError(
            f"weight must be [V, d], one row per class of {rows}, with d = hidden's last "
            f"dimension ({hidden.shape[-1]}), got {tuple(weight.shape)}"
        )
    if weight.shape[0] == 0:
        raise ValueError(f"weight has no rows for {rows} (shape (0, d))")
    if weight.dtype != hidden.dtype:
        raise TypeError(
            f"hidden and weight must have the same dtype, got {hidden.dtype} and {weight.dtype}"
        )
    if bias is not None:
        check_floating("bias", bias)
        if bias.shape != (weight.shape[0],):
            raise ValueError(
                f"bias must have one entry per row of weight, shape ({weight.shape[0]},), "
                f"got {tuple(bias.shape)}"
            )
