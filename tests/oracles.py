"""Shared test helpers: the float64 ground truth and the tolerance every parity test uses.

The tolerance is :mod:`crossent.tolerance` (Apple's cut-cross-entropy rule: an implementation at a
given dtype passes when its error against a float64 ground truth is no worse than PyTorch's own
error at that dtype, plus a small margin proportional to the dtype's resolution), the same rule
``crossent explain`` checks its numbers by.
"""

from __future__ import annotations

import torch
from torch import Tensor

from crossent.tolerance import worse_than_torch


def assert_no_worse_than_torch(
    ours: Tensor, torch_value: Tensor, truth: Tensor, dtype: torch.dtype, what: str = "value"
) -> None:
    """Each element of ``ours`` is as close to ``truth`` as PyTorch's, up to a small margin.

    The rule is :func:`crossent.tolerance.worse_than_torch`: the margin scales with the size of
    the values compared (their largest magnitude), so near-zero gradient entries are judged on
    the scale of the gradient, not on their own.
    """
    assert ours.shape == truth.shape, f"{what}: shape {tuple(ours.shape)} != {tuple(truth.shape)}"
    worse = worse_than_torch(ours, torch_value, truth, dtype)
    if bool(worse.any()):
        truth = truth.double()
        ours_error = (ours.double() - truth).abs()
        torch_error = (torch_value.double() - truth).abs()
        index = tuple(worse.nonzero()[0].tolist())
        raise AssertionError(
            f"{what} at {dtype}: error {ours_error.max().item():.3e} exceeds PyTorch's "
            f"{torch_error.max().item():.3e} + margin; first at {index}: "
            f"ours {ours.double()[index].item():.8g}, truth {truth[index].item():.8g}"
        )


def loss_and_grad(
    fn: object, logits: Tensor, target: Tensor, upstream: Tensor, **options: object
) -> tuple[Tensor, Tensor]:
    """``fn(logits, target, **options)`` and its gradient in the logits, contracted with
    ``upstream`` (a scalar weight, or one per token for ``reduction="none"``)."""
    leaf = logits.detach().clone().requires_grad_(True)
    loss = fn(leaf, target, **options)  # type: ignore[operator]
    (loss * upstream).sum().backward()
    assert leaf.grad is not None
    return loss.detach(), leaf.grad
