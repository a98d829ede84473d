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
* **Non-finite logits** give what PyTorch gives, row by row (``tests/losses/test_nonfinite.py``
  checks each against PyTorch in float64): a NaN anywhere in a row, a ``+inf`` anywhere, or a
  row of only ``-inf`` makes that row's loss and gradient NaN; ``-inf`` at the target alone
  gives a loss of ``+inf`` with a finite gradient; ``-inf`` elsewhere is a masked entry. An
  ignored row adds 0 to the loss even with NaN logits, but its gradient is NaN, as PyTorch's is.
  Nothing is replaced or clamped: a NaN is reported, never hidden (the fused loss on NaN hidden
  states or weights does the same, through the logits it would have made).
* Class weights are constants: no gradient flows into ``weight``. Second-order gradients are not
  supported.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from crossent.kernels import (
    LossOptions,
    RowUpstream,
    compute_dtype,
    probability_target_grad,
    row_chunks,
    rows_loss,
)
from crossent.losses._checks import (
    Reduction,
    check_class_target,
    check_class_weight,
    check_logits,
    check_loss_options,
    check_same_shape,
)
from crossent.losses._mean import mean_denominator


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

    @classmethod
    def from_rows(
        cls,
        loss: Tensor,
        token_loss: Tensor,
        logsumexp: Tensor,
        correct: Tensor,
        scored: Tensor,
        *,
        shape: torch.Size,
        dtype: torch.dtype,
    ) -> CrossEntropyStats:
        """The stats of flat ``[N]`` rows, given back in the input's leading ``shape``.

        ``loss`` is reduced already (a scalar), or per row for ``reduction="none"``; it is
        returned in ``dtype``, the input's, as PyTorch returns its losses.
        """
        return cls(
            loss=loss.to(dtype).reshape(shape if loss.dim() else ()),
            token_loss=token_loss.reshape(shape),
            logsumexp=logsumexp.reshape(shape),
            correct=correct.reshape(shape),
            scored=scored.reshape(shape),
        )

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
    options = LossOptions(ignore_index, float(label_smoothing), float(z_loss), softcap)

    num_classes = logits.shape[-1]
    leading = logits.shape[:-1]
    flat_logits = logits.reshape(-1, num_classes)
    # gather() and scatter() index with int64 only; the checks accepted any integer dtype.
    flat_target = target.reshape(-1, num_classes) if soft else target.reshape(-1).long()
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
        ce_mean = token_ce.sum() / mean_denominator(ce_denominator)
        loss = ce_mean + token_z.sum() / mean_denominator(count)
    return CrossEntropyStats.from_rows(
        loss, token_loss, lse, correct, scored, shape=leading, dtype=logits.dtype
    )


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
    check_loss_options(reduction, label_smoothing, z_loss, softcap)
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


class _CrossEntropyFunction(torch.autograd.Function):
    """Per-token cross-entropy and z-loss over ``[N, V]`` logits, a chunk of rows at a time.

    Outputs ``(ce, z, logsumexp, correct)``, each ``[N]``; only ``ce`` and ``z`` are
    differentiable. Saves the logits as given (no fp32 copy) and recomputes the softmax in
    backward; each chunk goes through :func:`crossent.kernels.rows_loss`.
    """

    @staticmethod
    def forward(
        ctx: Any,
        logits: Tensor,
        target: Tensor,
        weight: Tensor | None,
        options: LossOptions,
    ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        num_rows, num_classes = logits.shape
        dtype = compute_dtype(logits.dtype)
        ce = torch.zeros(num_rows, dtype=dtype, device=logits.device)
        lse = torch.zeros(num_rows, dtype=dtype, device=logits.device)
        correct = torch.zeros(num_rows, dtype=torch.bool, device=logits.device)
        for rows in row_chunks(num_rows, num_classes):
            terms = rows_loss(logits[rows], target[rows], options, weight=weight)
            ce[rows], lse[rows], correct[rows] = terms.ce, terms.lse, terms.correct

        z_term = options.z_loss * lse.square()
        if not torch.is_floating_point(target):
            z_term = torch.where(target != options.ignore_index, z_term, 0.0)
        ctx.save_for_backward(logits, target, weight, lse)
        ctx.options = options
        ctx.mark_non_differentiable(lse, correct)
        return ce, z_term, lse, correct

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(
        ctx: Any, grad_ce: Tensor, grad_z: Tensor, *_unused: Tensor
    ) -> tuple[Tensor | None, Tensor | None, None, None]:
        logits, target, weight, lse = ctx.saved_tensors
        options: LossOptions = ctx.options
        num_rows, num_classes = logits.shape
        soft = torch.is_floating_point(target)
        grad_logits = torch.empty_like(logits) if ctx.needs_input_grad[0] else None
        grad_target = torch.empty_like(target) if soft and ctx.needs_input_grad[1] else None
        for rows in row_chunks(num_rows, num_classes):
            if grad_target is not None:
                grad_target[rows] = probability_target_grad(
                    logits[rows], weight, options, grad_ce[rows].to(lse.dtype)
                ).to(target.dtype)
            if grad_logits is not None:
                grad_logits[rows] = logits[rows]  # the dispatcher turns it into its gradient
                upstream = RowUpstream(grad_ce[rows], grad_z[rows])
                chunk = grad_logits[rows]
                rows_loss(chunk, target[rows], options, weight=weight, upstream=upstream)
        return grad_logits, grad_target, None, None
