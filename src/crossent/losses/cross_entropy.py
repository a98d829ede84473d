"""Cross-entropy for language-model logits, in log space, with the options LLM training uses.

Conventions (the one place they are written down):

* **Class dimension last.** ``logits`` is ``[..., V]`` with any leading shape (``[B, T, V]`` for a
  language model); class-index targets are ``[...]`` and probability targets ``[..., V]``.
  ``torch.nn.functional.cross_entropy`` instead puts the classes at dim 1 for input with more than
  two dimensions (``[B, V, T]``); for 1-D and 2-D input the two agree.
* **Units.** Every loss is in nats (natural log). ``crossent.metrics`` converts to bits, perplexity
  and bits per byte.
* **Numerics.** The loss is ``logsumexp(z) - z[target]``, never ``-log(softmax(z) + eps)``, so
  logits of magnitude 1e4 and rows with ``-inf`` entries (masked vocabulary) give exact values.
  fp16 and bf16 logits are read a chunk of rows at a time and computed in fp32 (fp64 stays fp64);
  the loss is returned in the logits' dtype, as PyTorch does. The backward pass recomputes the
  softmax from the saved logits a chunk at a time, so the only large tensor it allocates is the
  gradient itself.
* **Ignored tokens and means.** Targets equal to ``ignore_index`` contribute 0 to the loss and its
  gradient. ``reduction="mean"`` divides by the summed class weight of the scored targets, exactly
  as PyTorch does (the token count when there are no weights); with probability targets it divides
  by the number of rows. The one deliberate difference from PyTorch: when nothing is scored (every
  target ignored, or an empty batch) the mean is 0 with zero gradients, not NaN, so a batch of
  padding cannot poison training.
* **Label smoothing** follows PyTorch's formula: ``(1 - eps) * nll + eps / V * sum_c w_c *
  (-log p_c)``, reduced with the same denominator as the nll term.
* **z-loss** (PaLM) adds ``z_loss * logsumexp(z)**2`` for each scored token; under
  ``reduction="mean"`` this term is averaged over the scored tokens (unweighted).
* **Soft-capping** (Gemma 2) replaces the logits by ``softcap * tanh(z / softcap)`` before
  everything else, z-loss included.
* Class weights are constants: no gradient flows into ``weight``. Second-order gradients are not
  supported.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from crossent.losses._checks import (
    Reduction,
    check_class_target,
    check_class_weight,
    check_in_range,
    check_logits,
    check_non_negative,
    check_positive,
    check_reduction,
    check_same_shape,
)

# Rows are processed in chunks of about this many logits: large enough that the per-chunk
# overhead vanishes, small enough that a chunk's fp32 work (4 MiB) stays in cache between passes.
# Measured on a 2-core CPU at V=50304: 2^20 beat 2^18 and 2^22.
_CHUNK_ELEMENTS = 1 << 20


@dataclass(frozen=True)
class _Options:
    ignore_index: int
    label_smoothing: float
    z_loss: float
    softcap: float | None


@dataclass(frozen=True)
class CrossEntropyStats:
    """The loss together with the per-token quantities evaluation and training report.

    Attributes:
        loss: the reduced loss, exactly what :func:`cross_entropy` returns (logits' dtype).
        token_loss: ``[...]`` per-token loss in nats, fp32 (fp64 for fp64 logits); 0 where ignored.
            Includes class weight, label smoothing and z-loss, as ``reduction="none"`` would.
        logsumexp: ``[...]`` log of the softmax normaliser of the (soft-capped) logits.
        correct: ``[...]`` bool, the target is the top-1 prediction (argmax of the logits; for
            probability targets, the argmax of the target). False where ignored.
        scored: ``[...]`` bool, the token counts (its target is not ``ignore_index``).
    """

    loss: Tensor
    token_loss: Tensor
    logsumexp: Tensor
    correct: Tensor
    scored: Tensor

    @property
    def count(self) -> int:
        """Number of scored tokens."""
        return int(self.scored.sum())

    @property
    def accuracy(self) -> float:
        """Top-1 accuracy over the scored tokens (NaN when none is scored)."""
        count = self.count
        return float(self.correct.sum()) / count if count else float("nan")


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
    """Cross-entropy between logits and class-index or probability targets, in nats.

    Agrees with ``torch.nn.functional.cross_entropy`` in value and gradient, with the class
    dimension last; see the module docstring for the conventions and the one deliberate difference
    (nothing scored gives 0, not NaN).

    Args:
        logits: ``[..., V]`` unnormalised scores, floating point.
        target: ``[...]`` integer class indices, or ``[..., V]`` probabilities (floating point).
        weight: ``[V]`` per-class weights, or None.
        ignore_index: class-index targets equal to this are not scored.
        reduction: ``"none"`` (shape ``[...]``), ``"sum"`` or ``"mean"``.
        label_smoothing: in [0, 1]; mixes the target with the uniform distribution.
        z_loss: coefficient of the ``logsumexp**2`` penalty (0 disables it).
        softcap: if given, logits become ``softcap * tanh(logits / softcap)`` first.

    Returns:
        The loss in the logits' dtype: a scalar, or ``[...]`` for ``reduction="none"``.

    Raises:
        TypeError: integer logits, or a target of a dtype that is neither.
        ValueError: a target outside ``[0, V)``, mismatched shapes, an option out of range.

    Example:
        >>> logits = torch.tensor([[2.0, 1.0, 0.1]])
        >>> round(cross_entropy(logits, torch.tensor([0])).item(), 4)
        0.417
    """
    return cross_entropy_with_stats(
        logits,
        target,
        weight,
        ignore_index,
        reduction,
        label_smoothing,
        z_loss=z_loss,
        softcap=softcap,
    ).loss


def cross_entropy_with_stats(
    logits: Tensor,
    target: Tensor,
    weight: Tensor | None = None,
    ignore_index: int = -100,
    reduction: Reduction = "mean",
    label_smoothing: float = 0.0,
    *,
    z_loss: float = 0.0,
    softcap: float | None = None,
) -> CrossEntropyStats:
    """:func:`cross_entropy` plus the per-token loss, logsumexp, top-1 correctness and count.

    One pass computes everything, so training and evaluation never recompute the softmax to
    report accuracy or per-token surprisal. Arguments are those of :func:`cross_entropy`.

    Example:
        >>> stats = cross_entropy_with_stats(torch.tensor([[2.0, 1.0], [0.0, 3.0]]),
        ...                                  torch.tensor([0, 0]))
        >>> stats.count, stats.accuracy
        (2, 0.5)
    """
    soft = _check_arguments(logits, target, weight, reduction, label_smoothing, z_loss, softcap)
    if not soft:
        check_class_target(target, logits.shape[-1], ignore_index)
    options = _Options(ignore_index, float(label_smoothing), float(z_loss), softcap)

    num_classes = logits.shape[-1]
    leading = logits.shape[:-1]
    flat_logits = logits.reshape(-1, num_classes)
    flat_target = target.reshape(-1, num_classes) if soft else target.reshape(-1)
    token_ce, token_z, lse, correct = _CrossEntropyFunction.apply(  # type: ignore[no-untyped-call]
        flat_logits, flat_target, weight, options
    )
    scored = torch.ones_like(lse, dtype=torch.bool) if soft else flat_target != ignore_index

    token_loss = token_ce + token_z
    if reduction == "none":
        loss = token_loss
    elif reduction == "sum":
        loss = token_loss.sum()
    else:
        count = scored.sum().to(token_ce.dtype)
        if soft or weight is None:
            ce_denominator = count
        else:
            safe_target = flat_target.masked_fill(~scored, 0)
            ce_denominator = (weight.detach().to(token_ce.dtype)[safe_target] * scored).sum()
        loss = token_ce.sum() / _nonzero(ce_denominator) + token_z.sum() / _nonzero(count)
    return CrossEntropyStats(
        loss=loss.to(logits.dtype).reshape(leading if reduction == "none" else ()),
        token_loss=token_loss.reshape(leading),
        logsumexp=lse.reshape(leading),
        correct=correct.reshape(leading),
        scored=scored.reshape(leading),
    )


def _nonzero(denominator: Tensor) -> Tensor:
    # Nothing scored: every numerator term is 0, so dividing by 1 gives the documented 0.
    return torch.where(denominator == 0, torch.ones_like(denominator), denominator)


def _check_arguments(
    logits: Tensor,
    target: Tensor,
    weight: Tensor | None,
    reduction: str,
    label_smoothing: float,
    z_loss: float,
    softcap: float | None,
) -> bool:
    """Validate everything but the target values; return whether the targets are probabilities."""
    check_logits("logits", logits)
    check_reduction(reduction)
    check_in_range("label_smoothing", label_smoothing, 0.0, 1.0)
    check_non_negative("z_loss", z_loss)
    if softcap is not None:
        check_positive("softcap", softcap)
    check_class_weight(weight, logits.shape[-1])
    soft = torch.is_floating_point(target)
    if soft:
        check_same_shape("logits", logits, "probability target", target)
    elif target.shape != logits.shape[:-1]:
        raise ValueError(
            f"class-index target must have the logits' shape without the class dimension: "
            f"logits {tuple(logits.shape)} needs target {tuple(logits.shape[:-1])}, "
            f"got {tuple(target.shape)}"
        )
    return soft


def _compute_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.float64 else torch.float32


def _row_chunks(num_rows: int, num_classes: int) -> Iterator[slice]:
    rows = max(1, _CHUNK_ELEMENTS // max(1, num_classes))
    for start in range(0, num_rows, rows):
        yield slice(start, min(start + rows, num_rows))


def _capped(raw: Tensor, options: _Options, dtype: torch.dtype) -> Tensor:
    """The logits the loss sees: soft-capped in the compute dtype, else as given.

    Uncapped logits stay in their own dtype; the softmax kernels upcast them on the fly.
    """
    if options.softcap is None:
        return raw
    return torch.tanh(raw.to(dtype) / options.softcap) * options.softcap


def _soft_target_mass(target: Tensor, weight: Tensor | None, label_smoothing: float) -> Tensor:
    """``a`` in ``loss = -sum_c a_c log p_c`` for probability targets: smoothed, then weighted."""
    num_classes = target.shape[-1]
    mass = target * (1 - label_smoothing) + label_smoothing / num_classes
    return mass * weight if weight is not None else mass


class _CrossEntropyFunction(torch.autograd.Function):
    """Per-token cross-entropy and z-loss over ``[N, V]`` logits, a chunk of rows at a time.

    Outputs ``(ce, z, logsumexp, correct)``, each ``[N]``; only ``ce`` and ``z`` are
    differentiable. Saves the logits as given (no fp32 copy) and recomputes the softmax in
    backward. Per chunk, PyTorch's fused ``log_softmax``/``softmax`` kernels do the heavy pass:
    they shift by the row maximum, so log-probabilities near the maximum, which decide the loss,
    keep every digit even when the logits are of size 1e4.
    """

    @staticmethod
    def forward(
        ctx: Any,
        logits: Tensor,
        target: Tensor,
        weight: Tensor | None,
        options: _Options,
    ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        num_rows, num_classes = logits.shape
        dtype = _compute_dtype(logits.dtype)
        soft = torch.is_floating_point(target)
        w = weight.to(dtype) if weight is not None else None
        eps = options.label_smoothing

        ce = torch.zeros(num_rows, dtype=dtype, device=logits.device)
        lse = torch.zeros(num_rows, dtype=dtype, device=logits.device)
        correct = torch.zeros(num_rows, dtype=torch.bool, device=logits.device)
        for rows in _row_chunks(num_rows, num_classes):
            z = _capped(logits[rows], options, dtype)
            log_probs = torch.log_softmax(z, dim=-1, dtype=dtype)
            top_logit, top1 = z.max(dim=-1)
            # logsumexp = z_max - log p_max: exact, and finite whenever the row is.
            lse[rows] = top_logit.to(dtype) - log_probs.gather(-1, top1[:, None]).squeeze(-1)
            if soft:
                mass = _soft_target_mass(target[rows].to(dtype), w, eps)
                # 0 * log 0 must be 0: a masked class the target gives no mass to.
                ce[rows] = -torch.where(mass == 0, 0.0, mass * log_probs).sum(-1)
                correct[rows] = top1 == target[rows].argmax(dim=-1)
                continue
            chunk_target = target[rows]
            scored = chunk_target != options.ignore_index
            safe = chunk_target.masked_fill(~scored, 0)
            nll = -log_probs.gather(-1, safe[:, None]).squeeze(-1)
            if w is not None:
                nll = nll * w[safe]
            chunk_ce = (1 - eps) * nll if eps else nll
            if eps:
                if w is not None:
                    log_probs = torch.where(w == 0, 0.0, log_probs * w)
                chunk_ce = chunk_ce - eps / num_classes * log_probs.sum(-1)
            ce[rows] = torch.where(scored, chunk_ce, 0.0)
            correct[rows] = (top1 == chunk_target) & scored

        if soft:
            z_term = options.z_loss * lse.square()
        else:
            z_term = torch.where(target != options.ignore_index, options.z_loss * lse.square(), 0.0)
        ctx.save_for_backward(logits, target, weight, lse)
        ctx.options = options
        ctx.mark_non_differentiable(lse, correct)
        return ce, z_term, lse, correct

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(
        ctx: Any, grad_ce: Tensor, grad_z: Tensor, _grad_lse: Tensor, _grad_correct: Tensor
    ) -> tuple[Tensor | None, Tensor | None, None, None]:
        logits, target, weight, lse = ctx.saved_tensors
        options: _Options = ctx.options
        num_rows, num_classes = logits.shape
        dtype = lse.dtype
        soft = torch.is_floating_point(target)
        w = weight.to(dtype) if weight is not None else None
        eps = options.label_smoothing
        grad_ce = grad_ce.to(dtype)
        # d(z_loss * lse^2)/dz = 2 * z_loss * lse * softmax(z)
        z_scale = 2 * options.z_loss * lse * grad_z.to(dtype)
        if not soft:
            scored = target != options.ignore_index
            safe_target = target.masked_fill(~scored, 0)
            grad_ce = torch.where(scored, grad_ce, 0.0)
            z_scale = torch.where(scored, z_scale, 0.0)
            w_target = w[safe_target] if w is not None else torch.ones_like(grad_ce)
            total_weight = w.sum() if w is not None else num_classes
            # Each row's target mass sums to (1 - eps) * w_y + eps / V * sum(w).
            target_total = (1 - eps) * w_target + eps / num_classes * total_weight

        grad_logits = torch.empty_like(logits) if ctx.needs_input_grad[0] else None
        grad_target = torch.empty_like(target) if soft and ctx.needs_input_grad[1] else None
        for rows in _row_chunks(num_rows, num_classes):
            g = grad_ce[rows, None]
            z = _capped(logits[rows], options, dtype)
            if grad_target is not None:
                factor = (1 - eps) * (w if w is not None else 1.0)
                log_probs = torch.log_softmax(z, dim=-1, dtype=dtype)
                grad_target[rows] = (-g * factor * log_probs).to(target.dtype)
            if grad_logits is None:
                continue
            # The loss is -sum_c a_c log p_c for a target mass a: its gradient in the logits is
            # softmax * sum(a) - a, plus z-loss's multiple of the softmax.
            grad = torch.softmax(z, dim=-1, dtype=dtype)
            if soft:
                mass = _soft_target_mass(target[rows].to(dtype), w, eps)
                grad.mul_(g * mass.sum(-1, keepdim=True) + z_scale[rows, None])
                grad.sub_(g * mass)
            else:
                grad.mul_(g * target_total[rows, None] + z_scale[rows, None])
                hit = -(1 - eps) * g * w_target[rows, None]
                grad.scatter_add_(-1, safe_target[rows, None], hit)
                if eps:
                    uniform = w if w is not None else torch.ones_like(grad[0])
                    grad.addcmul_(g, uniform, value=-eps / num_classes)
            if options.softcap is not None:
                grad.mul_(1 - (z / options.softcap).square())
            grad_logits[rows] = grad
        return grad_logits, grad_target, None, None
