"""Shared test helpers: the float64 ground truth and the tolerance every parity test uses.

:func:`composed_cross_entropy` is the oracle for the options PyTorch's loss lacks (z-loss,
soft-capping): the formula written with PyTorch's own ops.

The tolerance is :mod:`crossent.tolerance` (Apple's cut-cross-entropy rule: an implementation at a
given dtype passes when its error against a float64 ground truth is no worse than PyTorch's own
error at that dtype, plus a small margin proportional to the dtype's resolution), the same rule
``crossent explain`` checks its numbers by.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
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


def composed_cross_entropy(
    logits: Tensor,
    target: Tensor,
    *,
    reduction: str = "mean",
    label_smoothing: float = 0.0,
    z_loss: float = 0.0,
    softcap: float | None = None,
    ignore_index: int = -100,
) -> Tensor:
    """Cross-entropy plus z-loss of class-last ``[..., V]`` logits, in PyTorch's own ops only.

    The logits become ``softcap * tanh(logits / softcap)`` first; ``F.cross_entropy`` gives each
    token's loss, and ``z_loss * logsumexp**2`` is added for each scored token. ``"mean"`` divides
    by the number of scored tokens, and gives 0 when there is none.
    """
    if softcap is not None:
        logits = softcap * torch.tanh(logits / softcap)
    flat_logits, flat_target = logits.reshape(-1, logits.shape[-1]), target.reshape(-1)
    token = F.cross_entropy(
        flat_logits,
        flat_target,
        reduction="none",
        label_smoothing=label_smoothing,
        ignore_index=ignore_index,
    )
    scored = flat_target != ignore_index
    token = token + torch.where(scored, z_loss * torch.logsumexp(flat_logits, -1) ** 2, 0.0)
    if reduction == "none":
        return token.reshape(target.shape)
    if reduction == "sum":
        return token.sum()
    return token.sum() / scored.sum().clamp(min=1)
