"""The per-chunk arithmetic of cross-entropy, shared by the plain and the fused (linear) loss.

Both losses walk over the rows of ``[N, V]`` logits a chunk at a time, so that nothing larger
than a chunk is ever held in fp32. For one chunk, these functions turn logits into the loss terms
(forward) and turn the softmax of those logits, in place, into the gradient of the loss with
respect to them (backward). The conventions are those of :mod:`crossent.losses.cross_entropy`.

The loss of a row is ``-sum_c a_c * log p_c`` for a target mass ``a``: for a class-index target
``a = (1 - eps) * w_y * onehot(y) + eps / V * w`` (never materialised), for a probability target
``a = w * ((1 - eps) * q + eps / V)``. Its gradient in the logits is ``p * sum(a) - a``, and
z-loss adds ``2 * z_loss * lse * p``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass(frozen=True)
class LossOptions:
    """The options that change the per-row loss, validated by the public functions."""

    ignore_index: int = -100
    label_smoothing: float = 0.0
    z_loss: float = 0.0
    softcap: float | None = None


@dataclass(frozen=True)
class ChunkLoss:
    """Forward results for a chunk of ``r`` rows, in the compute dtype.

    Attributes:
        ce: ``[r]`` cross-entropy per row (class weight and label smoothing included), 0 where
            the target is ignored.
        lse: ``[r]`` logsumexp of the (soft-capped) logits.
        correct: ``[r]`` bool, the target is the argmax (False where ignored).
        probs: ``[r, V]`` the softmax, when asked for (made in place from the log-softmax, so
            it costs one exponential and no allocation).
    """

    ce: Tensor
    lse: Tensor
    correct: Tensor
    probs: Tensor | None = None


def compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """fp64 stays fp64; everything else is computed in fp32."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def capped(logits: Tensor, options: LossOptions, dtype: torch.dtype) -> Tensor:
    """The logits the loss sees: soft-capped in the compute dtype, else as given.

    Uncapped logits keep their dtype; the softmax kernels upcast them on the fly.
    """
    if options.softcap is None:
        return logits
    return torch.tanh(logits.to(dtype) / options.softcap) * options.softcap


def soft_target_mass(target: Tensor, weight: Tensor | None, label_smoothing: float) -> Tensor:
    """``a`` for probability targets: smoothed towards uniform, then weighted per class."""
    num_classes = target.shape[-1]
    mass = target * (1 - label_smoothing) + label_smoothing / num_classes
    return mass * weight if weight is not None else mass


def chunk_loss(
    logits: Tensor,
    target: Tensor,
    weight: Tensor | None,
    options: LossOptions,
    dtype: torch.dtype,
    *,
    keep_probs: bool = False,
) -> ChunkLoss:
    """Loss terms of ``[r, V]`` (already soft-capped) logits against ``[r]`` or ``[r, V]`` targets.

    PyTorch's fused ``log_softmax`` does the heavy pass: it shifts by the row maximum, so the
    log-probabilities near the maximum, which decide the loss, keep every digit even for logits of
    size 1e4 (``logsumexp(z) - z_y`` would not).
    """
    num_classes = logits.shape[-1]
    eps = options.label_smoothing
    log_probs = torch.log_softmax(logits, dim=-1, dtype=dtype)
    top_logit, top1 = logits.max(dim=-1)
    # logsumexp = z_max - log p_max: exact, and finite whenever the row is.
    lse = top_logit.to(dtype) - log_probs.gather(-1, top1[:, None]).squeeze(-1)
    if torch.is_floating_point(target):
        mass = soft_target_mass(target.to(dtype), weight, eps)
        # 0 * log 0 must be 0: a masked class the target gives no mass to.
        ce = -torch.where(mass == 0, 0.0, mass * log_probs).sum(-1)
        probs = log_probs.exp_() if keep_probs else None
        return ChunkLoss(ce, lse, top1 == target.argmax(dim=-1), probs)

    scored = target != options.ignore_index
    safe = target.masked_fill(~scored, 0)
    ce = -log_probs.gather(-1, safe[:, None]).squeeze(-1)
    if weight is not None:
        ce = ce * weight[safe]
    if eps:
        weighted = (
            log_probs if weight is None else torch.where(weight == 0, 0.0, log_probs * weight)
        )
        ce = (1 - eps) * ce - eps / num_classes * weighted.sum(-1)
    probs = log_probs.exp_() if keep_probs else None
    return ChunkLoss(torch.where(scored, ce, 0.0), lse, (top1 == target) & scored, probs)


def chunk_logit_grad_(
    probs: Tensor,
    logits: Tensor,
    target: Tensor,
    weight: Tensor | None,
    options: LossOptions,
    grad_ce: Tensor,
    grad_softmax: Tensor,
) -> Tensor:
    """Turn ``probs = softmax(logits)`` (``[r, V]``, compute dtype) into the logits' gradient.

    Works in place and returns ``probs``. ``grad_ce`` is the ``[r]`` upstream gradient of each
    row's cross-entropy, already 0 for ignored rows; ``grad_softmax`` is the ``[r]`` extra
    multiple of the softmax (z-loss's ``2 * z_loss * lse`` times its upstream gradient).
    ``logits`` (soft-capped) is only read for the soft-cap's chain rule.
    """
    num_classes = probs.shape[-1]
    eps = options.label_smoothing
    g = grad_ce[:, None]
    if torch.is_floating_point(target):
        mass = soft_target_mass(target.to(probs.dtype), weight, eps)
        probs.mul_(g * mass.sum(-1, keepdim=True) + grad_softmax[:, None])
        probs.sub_(g * mass)
    else:
        safe = target.masked_fill(target == options.ignore_index, 0)
        w_target = weight[safe][:, None] if weight is not None else 1.0
        total_weight = weight.sum() if weight is not None else num_classes
        # Each row's target mass sums to (1 - eps) * w_y + eps / V * sum(w).
        target_total = (1 - eps) * w_target + eps / num_classes * total_weight
        probs.mul_(g * target_total + grad_softmax[:, None])
        probs.scatter_add_(-1, safe[:, None], -(1 - eps) * g * w_target)
        if eps:
            uniform = weight if weight is not None else probs.new_ones(num_classes)
            probs.addcmul_(g, uniform, value=-eps / num_classes)
    if options.softcap is not None:
        probs.mul_(1 - (logits.to(probs.dtype) / options.softcap).square())
    return probs
