"""Fused linear cross-entropy: the LM-head loss without ever holding the ``[N, V]`` logits.

A language model's loss sits on its output projection, ``logits = hidden @ weight.T (+ bias)``.
At V = 50k to 256k those logits, and their gradient, are the largest tensors of a training step
(the cut-cross-entropy paper: Gemma 2's loss from 24 GB to 1 MB). This module computes the same
loss and gradients a chunk of tokens at a time:

* Ignored tokens are dropped before the projection: they cost nothing.
* For each chunk of ``rows`` tokens, the ``[rows, V]`` logits are computed, reduced to the loss
  terms, and (when gradients are wanted and the loss is a scalar) turned straight into their
  gradient, which is multiplied into ``grad_hidden`` and accumulated into ``grad_weight``; then
  the chunk is dropped. Backward only rescales those gradients by the upstream gradient. This is
  three matrix products, the floor for any implementation.
* With ``reduction="none"`` the upstream gradient differs per token and is unknown in forward, so
  forward keeps only the per-token logsumexp and backward recomputes each chunk's logits: four
  matrix products.
* fp16/bf16 inputs are multiplied in their dtype (on a CPU with AMX or AVX512-BF16, 2-3x the
  fp32 rate) and the softmax arithmetic, the log-sum-exp and the loss are done in fp32. The
  gradient of ``weight`` is a sum over the chunks: each chunk's product is rounded once to the
  inputs' dtype and added into an fp32 sum, never summed in bf16 (a bf16 running sum over many
  chunks loses small contributions). Gradients are returned in the inputs' dtype; the loss (and
  the per-token losses) in fp32, see :func:`loss_dtype`.
* A small fp16/bf16 batch on a CPU (up to about ``2 d`` scored tokens), whose logits take no more
  memory than that fp32 sum, is held whole when ``chunk_rows`` is not given
  (:func:`crossent.losses._lm_head.holds_whole_gradient`): one product for the logits of all of
  them, overwritten block by block by their gradient, one product for each gradient, each
  rounded once. The floor's three products at full size, at the chunked walk's memory or less.

The semantics (label smoothing, z-loss, soft-capping, ignored tokens, the nothing-scored mean of 0)
are those of :mod:`crossent.losses.cross_entropy`, with the projection's ``weight`` playing no part
in the class weighting (there are no class weights here). Each chunk's rows go through
:func:`crossent.kernels.rows_loss`; the walk over the chunks and the gradient accumulation are in
:mod:`crossent.losses._lm_head`, shared with the vocabulary-parallel loss.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from crossent.kernels import (
    ChunkLoss,
    LossOptions,
    RowUpstream,
    compute_dtype,
    default_chunk_rows,
    rows_loss,
    scaled_to,
)
from crossent.losses._checks import (
    Reduction,
    check_class_target,
    check_lm_head,
    check_loss_options,
    check_positive,
)
from crossent.losses._lm_head import (
    ChunkBuffer,
    HeadGrads,
    chunk_logits,
    holds_whole_gradient,
    scored_chunks,
    scored_rows,
)
from crossent.losses._mean import mean_denominator
from crossent.losses.cross_entropy import CrossEntropyStats

__all__ = [
    "ChunkObserver",
    "default_chunk_rows",
    "linear_cross_entropy",
    "linear_cross_entropy_with_stats",
    "loss_dtype",
]

# Called with a chunk's [rows, V] raw logits (to read, not change), its [rows] targets and its
# loss terms, while the chunk is in memory.
ChunkObserver = Callable[[Tensor, Tensor, ChunkLoss], None]


@dataclass(frozen=True)
class _Plan:
    options: LossOptions
    chunk_rows: int
    reduction: str
    on_chunk: ChunkObserver | None = None
    # chunk_rows was not given: a small bf16/fp16 batch may be held whole (holds_whole_gradient)
    may_hold_whole: bool = False


def linear_cross_entropy(
    hidden: Tensor,
    weight: Tensor,
    target: Tensor,
    bias: Tensor | None = None,
    *,
    ignore_index: int = -100,
    reduction: Reduction = "mean",
    label_smoothing: float = 0.0,
    z_loss: float = 0.0,
    softcap: float | None = None,
    chunk_rows: int | None = None,
) -> Tensor:
    """``cross_entropy(hidden @ weight.T + bias, target)`` without materialising the logits.

    Equal in value and in the gradients of ``hidden``, ``weight`` and ``bias`` to the unfused
    loss (the argument order is that of ``torch.nn.functional.linear_cross_entropy``). Given
    ``chunk_rows``, never holds more than that many rows of logits; by default a small bf16/fp16
    batch whose logits take less memory than the chunks' fp32 sum of ``grad_weight`` is held
    whole (the module docstring).

    Args:
        hidden: ``[..., d]`` the last hidden states.
        weight: ``[V, d]`` the LM head (the tied embedding for GPT-2-style models).
        target: ``[...]`` next-token ids in ``[0, V)`` or ``ignore_index``.
        bias: ``[V]`` or None.
        ignore_index: targets equal to this are not scored and cost no computation.
        reduction: ``"none"`` (``[...]``), ``"sum"`` or ``"mean"`` over the scored tokens.
        label_smoothing, z_loss, softcap: as in :func:`crossent.cross_entropy`.
        chunk_rows: tokens per chunk; default from V and the dtype (60 MiB of logits,
            :func:`crossent.kernels.default_chunk_rows`).

    Returns:
        The loss in nats, in ``hidden``'s dtype for fp32/fp64 and in fp32 for bf16/fp16
        (:func:`loss_dtype`).

    Example:
        >>> hidden, head = torch.randn(2, 5, 8), torch.randn(11, 8)
        >>> target = torch.randint(0, 11, (2, 5))
        >>> fused = linear_cross_entropy(hidden, head, target)
        >>> plain = torch.nn.functional.cross_entropy((hidden @ head.T).flatten(0, 1),
        ...                                           target.flatten())
        >>> torch.allclose(fused, plain)
        True
    """
    return linear_cross_entropy_with_stats(
        hidden,
        weight,
        target,
        bias,
        ignore_index=ignore_index,
        reduction=reduction,
        label_smoothing=label_smoothing,
        z_loss=z_loss,
        softcap=softcap,
        chunk_rows=chunk_rows,
    ).loss


def linear_cross_entropy_with_stats(
    hidden: Tensor,
    weight: Tensor,
    target: Tensor,
    bias: Tensor | None = None,
    *,
    ignore_index: int = -100,
    reduction: Reduction = "mean",
    label_smoothing: float = 0.0,
    z_loss: float = 0.0,
    softcap: float | None = None,
    chunk_rows: int | None = None,
    on_chunk: ChunkObserver | None = None,
) -> CrossEntropyStats:
    """:func:`linear_cross_entropy` plus per-token loss, logsumexp, top-1 correctness and count.

    This is how evaluation scores tokens straight from hidden states. The per-token tensors are
    not differentiable; ``loss`` is.

    ``on_chunk``, given, is called once per chunk of scored tokens in the forward pass with the
    chunk's ``[rows, V]`` raw logits (before any soft-cap; to read, not to change), its
    ``[rows]`` targets and its :class:`crossent.kernels.ChunkLoss`, so that more statistics of
    the logits can be gathered without computing them again; the loss then takes the path that
    recomputes the logits in backward.
    """
    _check_arguments(hidden, weight, target, bias, reduction, label_smoothing, z_loss, softcap)
    vocab_size = weight.shape[0]
    check_class_target(target, vocab_size, ignore_index)
    if chunk_rows is not None:
        check_positive("chunk_rows", chunk_rows)
    plan = _Plan(
        options=LossOptions(ignore_index, float(label_smoothing), float(z_loss), softcap),
        chunk_rows=chunk_rows or default_chunk_rows(vocab_size, hidden.element_size()),
        reduction=reduction,
        on_chunk=on_chunk,
        may_hold_whole=chunk_rows is None,
    )
    leading = hidden.shape[:-1]
    flat_hidden = hidden.reshape(-1, hidden.shape[-1])
    flat_target = target.reshape(-1).long()  # gather() indexes with int64 only
    scored = flat_target != ignore_index

    wants_grad = torch.is_grad_enabled() and any(
        t is not None and t.requires_grad for t in (hidden, weight, bias)
    )
    if reduction == "none" or not wants_grad or on_chunk is not None:
        ce, z_term, lse, correct = _RecomputeFunction.apply(  # type: ignore[no-untyped-call]
            flat_hidden, weight, bias, flat_target, plan
        )
        token_loss = ce + z_term
        if reduction == "none":
            loss = token_loss
        elif reduction == "sum":
            loss = token_loss.sum()
        else:
            loss = token_loss.sum() / mean_denominator(scored.sum()).to(token_loss.dtype)
    else:
        loss, token_loss, lse, correct = _GradInForwardFunction.apply(  # type: ignore[no-untyped-call]
            flat_hidden, weight, bias, flat_target, plan
        )
    return CrossEntropyStats.from_rows(
        loss, token_loss, lse, correct, scored, shape=leading, dtype=loss_dtype(hidden.dtype)
    )


def loss_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype the fused loss is returned in for inputs of ``dtype``: fp32 for bf16/fp16.

    A bf16 scalar near 12.8 is rounded to a multiple of 1/16 and carries 2-3 digits; the loss is
    summed in fp32 inside, so it is handed back unrounded (as transformers reports a half
    model's loss in fp32). fp32 and fp64 inputs get their own dtype.
    """
    return compute_dtype(dtype)


def _check_arguments(
    hidden: Tensor,
    weight: Tensor,
    target: Tensor,
    bias: Tensor | None,
    reduction: str,
    label_smoothing: float,
    z_loss: float,
    softcap: float | None,
) -> None:
    check_lm_head(hidden, weight, bias)
    check_loss_options(reduction, label_smoothing, z_loss, softcap)
    if target.shape != hidden.shape[:-1]:
        raise ValueError(
            f"target must have hidden's shape without the last dimension: hidden "
            f"{tuple(hidden.shape)} needs target {tuple(hidden.shape[:-1])}, "
            f"got {tuple(target.shape)}"
        )


def _chunks(
    hidden: Tensor,
    weight: Tensor,
    bias: Tensor | None,
    target: Tensor,
    plan: _Plan,
    upstream: RowUpstream | None = None,
) -> Iterator[tuple[Tensor, Tensor, ChunkLoss, Tensor]]:
    """The walk both autograd functions share: ``(index, hidden, terms, logits)`` per chunk.

    ``index`` holds the chunk's (scored) tokens, ``hidden`` their hidden states and ``terms``
    their loss terms. Given ``upstream``, the ``[N]`` gradients of every token's cross-entropy
    and z-loss term, the chunk's ``logits`` have been overwritten by their gradient.
    """
    buffer = ChunkBuffer()
    for index in scored_chunks(target, plan.options.ignore_index, plan.chunk_rows):
        chunk_hidden = hidden[index]
        logits = buffer.logits(chunk_hidden, weight, bias)
        rows = RowUpstream(upstream.ce[index], upstream.z[index]) if upstream else None
        terms = rows_loss(logits, target[index], plan.options, upstream=rows)
        yield index, chunk_hidden, terms, logits
        # The next chunk's logits are written over this chunk's (ChunkBuffer): one alive.
        del logits, terms


def _whole(
    hidden: Tensor,
    weight: Tensor,
    bias: Tensor | None,
    target: Tensor,
    plan: _Plan,
    upstream: RowUpstream,
) -> Iterator[tuple[Tensor, Tensor, ChunkLoss, Tensor]]:
    """:func:`_chunks` as a single chunk of every scored token (:func:`holds_whole_gradient`):
    their logits in one matrix product, the rows reduced ``chunk_rows`` at a time (so the rows'
    temporaries stay a chunk's size), each block overwritten by its gradient."""
    index = scored_rows(target, plan.options.ignore_index)
    if index.numel() == 0:
        return
    chunk_hidden = hidden[index]
    logits = chunk_logits(chunk_hidden, weight, bias)
    blocks = []
    for start in range(0, index.numel(), plan.chunk_rows):
        rows = index[start : start + plan.chunk_rows]
        block = logits[start : start + plan.chunk_rows]  # a view, as every chunk of _chunks
        rows_upstream = RowUpstream(upstream.ce[rows], upstream.z[rows])
        blocks.append(rows_loss(block, target[rows], plan.options, upstream=rows_upstream))
    terms = ChunkLoss(
        torch.cat([block.ce for block in blocks]),
        torch.cat([block.lse for block in blocks]),
        torch.cat([block.correct for block in blocks]),
    )
    yield index, chunk_hidden, terms, logits


class _GradInForwardFunction(torch.autograd.Function):
    """Scalar loss (mean or sum) whose gradients are computed during the forward pass.

    Outputs ``(loss, token_loss, logsumexp, correct)``; only ``loss`` is differentiable.
    """

    @staticmethod
    def forward(
        ctx: Any,
        hidden: Tensor,
        weight: Tensor,
        bias: Tensor | None,
        target: Tensor,
        plan: _Plan,
    ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        options = plan.options
        dtype = compute_dtype(hidden.dtype)
        num_tokens = hidden.shape[0]
        # The walk's nonzero() waits for the device anyway, so counting on the host costs nothing.
        count = int((target != options.ignore_index).sum())
        # d loss / d token_loss: 1 for a sum, 1/count for a mean (nothing scored: the loss is 0).
        scale = 1.0 / mean_denominator(count) if plan.reduction == "mean" else 1.0

        token_loss = torch.zeros(num_tokens, dtype=dtype, device=hidden.device)
        lse = torch.zeros(num_tokens, dtype=dtype, device=hidden.device)
        correct = torch.zeros(num_tokens, dtype=torch.bool, device=hidden.device)
        whole = plan.may_hold_whole and holds_whole_gradient(
            count, weight, hidden.dtype, plan.chunk_rows
        )
        grads = HeadGrads.zeros(
            hidden, weight, dtype, ctx.needs_input_grad, hidden.dtype if whole else None
        )
        grad_scale = torch.full((num_tokens,), scale, dtype=dtype, device=hidden.device)
        walk = _whole if whole else _chunks
        for index, chunk_hidden, terms, grad in walk(
            hidden, weight, bias, target, plan, RowUpstream(grad_scale, grad_scale)
        ):
            token_loss[index] = (terms.ce + options.z_loss * terms.lse.square()).to(dtype)
            lse[index] = terms.lse.to(dtype)
            correct[index] = terms.correct
            grads.add_chunk(index, chunk_hidden, weight, grad.to(hidden.dtype))
            del grad, terms  # see _chunks: the next chunk's logits are made without these

        loss = token_loss.sum() * scale
        ctx.grads = grads  # every gradient, and the spare buffer for rounding grad_weight
        ctx.input_dtypes = (hidden.dtype, weight.dtype, bias.dtype if bias is not None else None)
        ctx.mark_non_differentiable(token_loss, lse, correct)
        return loss, token_loss, lse, correct

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(
        ctx: Any, grad_loss: Tensor, *_unused: Tensor
    ) -> tuple[Tensor | None, Tensor | None, Tensor | None, None, None]:
        grads: HeadGrads = ctx.grads
        del ctx.grads  # the graph may outlive this call; its gradients must not
        hidden_dtype, weight_dtype, bias_dtype = ctx.input_dtypes
        needs = ctx.needs_input_grad
        # The usual upstream gradient is exactly 1: the stored gradients are handed over, no
        # copy. Otherwise scaled and, for bf16/fp16, rounded in one pass from the fp32 sums.
        upstream = None if bool(grad_loss == 1) else grad_loss
        return (
            scaled_to(grads.hidden, upstream, hidden_dtype) if needs[0] else None,
            grads.weight_for(weight_dtype, upstream) if needs[1] else None,
            scaled_to(grads.bias, upstream, bias_dtype)
            if needs[2] and bias_dtype is not None
            else None,
            None,
            None,
        )


class _RecomputeFunction(torch.autograd.Function):
    """Per-token ``(ce, z, logsumexp, correct)``; backward recomputes each chunk's logits."""

    @staticmethod
    def forward(
        ctx: Any,
        hidden: Tensor,
        weight: Tensor,
        bias: Tensor | None,
        target: Tensor,
        plan: _Plan,
    ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        dtype = compute_dtype(hidden.dtype)
        num_tokens = hidden.shape[0]
        ce = torch.zeros(num_tokens, dtype=dtype, device=hidden.device)
        lse = torch.zeros(num_tokens, dtype=dtype, device=hidden.device)
        correct = torch.zeros(num_tokens, dtype=torch.bool, device=hidden.device)
        with torch.no_grad():
            for index, _, terms, logits in _chunks(hidden, weight, bias, target, plan):
                if plan.on_chunk is not None:
                    plan.on_chunk(logits, target[index], terms)
                ce[index] = terms.ce.to(dtype)
                lse[index] = terms.lse.to(dtype)
                correct[index] = terms.correct
                del logits, terms  # see _chunks: one chunk alive at a time
        z_term = plan.options.z_loss * lse.square()  # 0 for ignored tokens, whose lse stays 0
        ctx.save_for_backward(hidden, weight, bias, target, lse)
        ctx.plan = plan
        ctx.mark_non_differentiable(lse, correct)
        return ce, z_term, lse, correct

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(
        ctx: Any, grad_ce: Tensor, grad_z: Tensor, *_unused: Tensor
    ) -> tuple[Tensor | None, Tensor | None, Tensor | None, None, None]:
        hidden, weight, bias, target, lse = ctx.saved_tensors
        grads = HeadGrads.zeros(hidden, weight, lse.dtype, ctx.needs_input_grad)
        for index, chunk_hidden, _, grad in _chunks(
            hidden, weight, bias, target, ctx.plan, RowUpstream(grad_ce, grad_z)
        ):
            grads.add_chunk(index, chunk_hidden, weight, grad.to(hidden.dtype))
            del grad
        return (*grads.for_inputs(hidden, weight, bias), None, None)
