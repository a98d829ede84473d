"""Vocabulary-parallel cross-entropy: the LM-head loss when the vocabulary is sharded over ranks.

Under tensor parallelism (Megatron-LM's scheme) each rank of a process group holds a contiguous
slice of the vocabulary: the ranks of the group, in order, hold classes ``[0, V_0)``,
``[V_0, V_0 + V_1)``, ... The slices may differ in size (V = 101 over 3 ranks: 34, 34, 33). Each
rank sees only its ``[..., V_local]`` logits, yet the loss needs the softmax over all V classes.
Every quantity the loss needs is a max or a sum over classes, so a few all-reduces of
``[N]``-sized tensors replace the ``[N, V]`` logits that no rank ever holds:

1. ``all_gather`` of each rank's slice size: the global V and this rank's offset.
2. ``all_reduce(MAX)`` of each row's maximum ``m``.
3. One ``all_reduce(SUM)`` of an ``[N, k]`` tensor packing, per row, ``sum_c exp(z_c - m)``, the
   target's shifted logit ``z_y - m`` (contributed by the one rank whose slice holds ``y``, 0
   elsewhere) and, with label smoothing, ``sum_c (z_c - m)``.

Every rank then computes the same loss for every token. The backward pass is local: the gradient
of a rank's logits is the softmax over the global normaliser restricted to its slice, minus
``1 - eps`` at the target where the target is local, minus ``eps / V`` everywhere (plus z-loss's
multiple of the softmax). It needs no communication.

The semantics are those of :mod:`crossent.losses.cross_entropy` (loss in nats; PyTorch's label
smoothing; z-loss over scored tokens; ignored tokens; a mean over nothing scored is 0 with zero
gradients; fp16/bf16 computed in fp32, fp64 in fp64, the loss returned in the input dtype), with
no class weights and no soft-capping. Contract for callers, as for any collective:

* every rank of ``group`` calls the function with the same ``target`` (global class ids), the same
  options and the same leading shape, in the same order as its other collectives;
* every rank runs the backward pass of :func:`vocab_parallel_linear_cross_entropy` (it
  all-reduces ``grad_hidden``), with ``hidden.requires_grad`` the same on every rank.

An argument error found on one rank only (a bad local shape) raises there while the other ranks
wait in the first collective until the group's timeout; errors about ``target`` or the options
are raised on every rank alike.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor
from torch.distributed import ProcessGroup

from crossent.kernels import compute_dtype, default_chunk_rows, row_chunks
from crossent.losses._checks import (
    Reduction,
    check_class_target,
    check_lm_head,
    check_logits,
    check_loss_options,
    check_positive,
)
from crossent.losses._lm_head import HeadGrads, chunk_logits, scored_chunks
from crossent.losses._mean import mean_denominator


@dataclass(frozen=True)
class _Shard:
    """Where this rank's slice sits in the vocabulary, and the options of the loss."""

    group: ProcessGroup | None
    offset: int  # global id of the slice's first class
    local_size: int
    vocab_size: int  # global V
    largest_slice: int  # over the group's ranks: sets a chunk size common to all of them
    ignore_index: int
    label_smoothing: float
    z_loss: float


def vocab_parallel_cross_entropy(
    logits: Tensor,
    target: Tensor,
    group: ProcessGroup | None = None,
    *,
    ignore_index: int = -100,
    reduction: Reduction = "mean",
    label_smoothing: float = 0.0,
    z_loss: float = 0.0,
) -> Tensor:
    """Cross-entropy of logits whose class dimension is sharded over ``group``, in nats.

    Every rank gets the loss :func:`crossent.cross_entropy` would give on the concatenated
    logits, and the gradient of its own slice of them. Three collectives per call (see the module
    docstring); backward communicates nothing.

    Usage, on every rank of a tensor-parallel group (a doctest cannot start a process group)::

        import torch.distributed as dist
        from crossent.losses.parallel import vocab_parallel_cross_entropy

        dist.init_process_group("nccl")              # or a subgroup passed as ``group``
        logits_local = lm_head_shard(hidden)         # [B, T, V_local], this rank's classes
        loss = vocab_parallel_cross_entropy(logits_local, target)  # target [B, T], global ids
        loss.backward()                              # fills this rank's slice of the gradient

    Args:
        logits: ``[..., V_local]`` this rank's slice of the unnormalised scores, floating point.
            Slices are contiguous and in rank order within ``group``; sizes may differ.
        target: ``[...]`` global class ids in ``[0, V)`` or ``ignore_index``, identical on every
            rank.
        group: the process group the vocabulary is sharded over; None for the default group.
        ignore_index: targets equal to this are not scored.
        reduction: ``"none"`` (shape ``[...]``), ``"sum"`` or ``"mean"`` over the scored tokens.
        label_smoothing: in [0, 1]; PyTorch's formula over the global vocabulary.
        z_loss: coefficient of the ``logsumexp**2`` penalty (0 disables it).

    Returns:
        The loss in the logits' dtype, identical on every rank: a scalar, or ``[...]`` for
        ``reduction="none"``.

    Raises:
        RuntimeError: torch.distributed is not initialised, or this process is not in ``group``.
        TypeError: integer logits or a non-integer target.
        ValueError: a target outside ``[0, V)`` (global V), mismatched shapes, an option out of
            range.
    """
    check_loss_options(reduction, label_smoothing, z_loss)
    check_logits("logits", logits)
    _check_target_shape(target, logits.shape[:-1], "logits", tuple(logits.shape))
    shard = _locate_shard(
        logits.shape[-1], group, logits.device, ignore_index, label_smoothing, z_loss
    )
    check_class_target(target, shard.vocab_size, ignore_index)

    leading = target.shape
    flat_target = target.reshape(-1)
    token_loss = _VocabParallelFunction.apply(  # type: ignore[no-untyped-call]
        logits.reshape(-1, shard.local_size), flat_target, shard
    )
    return _reduce(token_loss, flat_target != ignore_index, reduction, leading).to(logits.dtype)


def vocab_parallel_linear_cross_entropy(
    hidden: Tensor,
    weight: Tensor,
    target: Tensor,
    bias: Tensor | None = None,
    group: ProcessGroup | None = None,
    *,
    ignore_index: int = -100,
    reduction: Reduction = "mean",
    label_smoothing: float = 0.0,
    z_loss: float = 0.0,
    chunk_rows: int | None = None,
) -> Tensor:
    """Cross-entropy of ``hidden @ weight.T + bias`` for an LM head sharded by vocabulary rows.

    ``hidden`` is replicated on every rank; ``weight`` and ``bias`` are this rank's rows of the
    head. The loss equals :func:`crossent.cross_entropy` on the full logits, on every rank.

    The logits are never materialised: scored tokens are taken ``chunk_rows`` at a time, their
    ``[chunk_rows, V_local]`` logits computed, reduced to the loss terms with two all-reduces
    (max, then the packed sums), and dropped. Ignored tokens cost nothing. Backward recomputes
    each chunk's logits (no communication for that) and forms the gradients:

    * ``grad_weight`` and ``grad_bias``: local, this rank's rows only.
    * ``grad_hidden``: each rank's logits contribute ``grad_logits_local @ weight_local``; the
      backward pass all-reduces (sums) these over ``group``, so every rank receives the full
      gradient, as if ``hidden`` had entered the tensor-parallel region through Megatron's "copy
      to tensor-parallel region" (identity forward, all-reduce backward). Do not all-reduce it
      again.

    Usage, on every rank::

        head = lm_head_weight_shard          # [V_local, d], this rank's rows
        loss = vocab_parallel_linear_cross_entropy(hidden, head, target)
        loss.backward()                      # every rank must run it: it all-reduces grad_hidden

    Args:
        hidden: ``[..., d]`` the last hidden states, identical on every rank.
        weight: ``[V_local, d]`` this rank's rows of the LM head (contiguous, in rank order).
        target: ``[...]`` global next-token ids in ``[0, V)`` or ``ignore_index``, identical on
            every rank.
        bias: ``[V_local]`` this rank's bias entries, or None.
        group: the process group the vocabulary is sharded over; None for the default group.
        ignore_index, reduction, label_smoothing, z_loss: as in
            :func:`vocab_parallel_cross_entropy`.
        chunk_rows: tokens per chunk, the same on every rank; default about 64 MiB of fp32
            logits on the rank with the largest slice.

    Returns:
        The loss in nats, in ``hidden``'s dtype, identical on every rank.

    Raises:
        RuntimeError: torch.distributed is not initialised, or this process is not in ``group``.
        TypeError: non-floating inputs, ``hidden`` and ``weight`` of different dtypes, or a
            non-integer target.
        ValueError: a target outside ``[0, V)`` (global V), mismatched shapes, an option out of
            range.
    """
    check_loss_options(reduction, label_smoothing, z_loss)
    check_lm_head(hidden, weight, bias, rows="this rank's shard of the vocabulary")
    _check_target_shape(target, hidden.shape[:-1], "hidden", tuple(hidden.shape))
    if chunk_rows is not None:
        check_positive("chunk_rows", chunk_rows)
    shard = _locate_shard(
        weight.shape[0], group, weight.device, ignore_index, label_smoothing, z_loss
    )
    check_class_target(target, shard.vocab_size, ignore_index)
    if chunk_rows is None:
        # From the largest slice, so that every rank walks the same chunks (each is a collective).
        chunk_rows = default_chunk_rows(shard.largest_slice)

    leading = target.shape
    flat_target = target.reshape(-1)
    token_loss = _LinearVocabParallelFunction.apply(  # type: ignore[no-untyped-call]
        hidden.reshape(-1, hidden.shape[-1]), weight, bias, flat_target, shard, chunk_rows
    )
    return _reduce(token_loss, flat_target != ignore_index, reduction, leading).to(hidden.dtype)


def _check_target_shape(
    target: Tensor, expected: torch.Size, name: str, input_shape: tuple[int, ...]
) -> None:
    if target.shape != expected:
        raise ValueError(
            f"target must have {name}'s shape without the last dimension: {name} "
            f"{input_shape} needs target {tuple(expected)}, got {tuple(target.shape)}"
        )


def _locate_shard(
    local_size: int,
    group: ProcessGroup | None,
    device: torch.device,
    ignore_index: int,
    label_smoothing: float,
    z_loss: float,
) -> _Shard:
    """Gather every rank's slice size (one collective): this slice's offset and the global V."""
    if not dist.is_available() or not dist.is_initialized():
        raise RuntimeError(
            "vocabulary-parallel cross-entropy needs an initialised torch.distributed process "
            "group; call torch.distributed.init_process_group first, or use "
            "crossent.cross_entropy in a single process"
        )
    rank = dist.get_rank(group)
    if rank < 0:
        raise RuntimeError("this process is not a member of the process group it was given")
    mine = torch.tensor([local_size], dtype=torch.int64, device=device)
    sizes = [torch.empty_like(mine) for _ in range(dist.get_world_size(group))]
    dist.all_gather(sizes, mine, group=group)
    all_sizes = [int(size) for size in sizes]
    return _Shard(
        group=group,
        offset=sum(all_sizes[:rank]),
        local_size=local_size,
        vocab_size=sum(all_sizes),
        largest_slice=max(all_sizes),
        ignore_index=ignore_index,
        label_smoothing=float(label_smoothing),
        z_loss=float(z_loss),
    )


def _reduce(token_loss: Tensor, scored: Tensor, reduction: str, leading: torch.Size) -> Tensor:
    if reduction == "none":
        return token_loss.reshape(leading)
    if reduction == "sum":
        return token_loss.sum()
    return token_loss.sum() / mean_denominator(scored.sum()).to(token_loss.dtype)


def _local_target(target: Tensor, shard: _Shard) -> tuple[Tensor, Tensor]:
    """``(in_slice, index)``: where the target is one of this rank's classes, and its column.

    ``index`` is 0 where the target is elsewhere (or ignored), so it is always safe to gather.
    """
    index = target - shard.offset
    in_slice = (target != shard.ignore_index) & (index >= 0) & (index < shard.local_size)
    return in_slice, index.masked_fill(~in_slice, 0)


def _global_stats(logits: Tensor, target: Tensor, shard: _Shard) -> tuple[Tensor, Tensor]:
    """Row maximum ``[r]`` and the packed sums ``[r, k]`` over the whole vocabulary.

    Two collectives. ``logits`` is ``[r, V_local]`` in any floating dtype; the results are in the
    compute dtype. Columns of the sums: ``sum_c exp(z_c - m)``, ``z_y - m`` and, with label
    smoothing, ``sum_c (z_c - m)``. Shifting by the global maximum before summing keeps the
    digits that decide the loss when logits are large (1e4): ``m`` cancels exactly.
    """
    dtype = compute_dtype(logits.dtype)
    num_rows = logits.shape[0]
    row_max = logits.amax(dim=-1).to(dtype)
    dist.all_reduce(row_max, op=dist.ReduceOp.MAX, group=shard.group)

    in_slice, index = _local_target(target, shard)
    columns = 3 if shard.label_smoothing else 2
    sums = torch.zeros(num_rows, columns, dtype=dtype, device=logits.device)
    for rows in row_chunks(num_rows, shard.local_size):
        shifted = logits[rows].to(dtype) - row_max[rows, None]
        target_logit = shifted.gather(-1, index[rows, None]).squeeze(-1)
        sums[rows, 1] = torch.where(in_slice[rows], target_logit, 0.0)
        if shard.label_smoothing:
            sums[rows, 2] = shifted.sum(-1)
        sums[rows, 0] = shifted.exp_().sum(-1)
    dist.all_reduce(sums, op=dist.ReduceOp.SUM, group=shard.group)
    return row_max, sums


def _token_loss(row_max: Tensor, sums: Tensor, target: Tensor, shard: _Shard) -> Tensor:
    """Per-row loss ``[r]`` (cross-entropy plus z-loss) from the global statistics; 0 if ignored.

    With ``log_norm = log sum_c exp(z_c - m)``, ``-log p_c = log_norm - (z_c - m)``. PyTorch's
    smoothing term ``eps / V * sum_c -log p_c`` is ``eps * (log_norm - sum_c (z_c - m) / V)``
    with V the GLOBAL vocabulary size. Megatron-LM's vocab-parallel loss instead averages the
    log-probabilities over the local slice only (its ``vocab_size`` is the partition's size, also
    used in its ``eps * V / (V - 1)`` rescaling), so its smoothed loss changes with the number of
    ranks and differs between ranks; that is a known bug this function does not reproduce.
    """
    eps = shard.label_smoothing
    log_norm = sums[:, 0].log()
    loss = log_norm - sums[:, 1]
    if eps:
        loss = (1 - eps) * loss + eps * (log_norm - sums[:, 2] / shard.vocab_size)
    if shard.z_loss:
        loss = loss + shard.z_loss * (row_max + log_norm).square()
    return torch.where(target != shard.ignore_index, loss, 0.0)


def _logit_grad(
    logits: Tensor,
    row_max: Tensor,
    log_norm: Tensor,
    target: Tensor,
    grad_loss: Tensor,
    shard: _Shard,
) -> Tensor:
    """Gradient ``[r, V_local]`` of the per-row loss in this rank's logits, compute dtype.

    ``d loss / d z_c = p_c * (1 + 2 * z_loss * lse) - (1 - eps) * [c == y] - eps / V``, with
    ``p`` the softmax over the global normaliser and ``[c == y]`` nonzero only on the rank
    holding ``y``; scaled by ``grad_loss`` ``[r]``, which must be 0 for ignored rows.
    """
    eps = shard.label_smoothing
    dtype = row_max.dtype
    # (z - m) - log_norm rather than z - lse: m cancels exactly, so large logits keep digits.
    probs = (logits.to(dtype) - row_max[:, None]).sub_(log_norm[:, None]).exp_()
    scale = grad_loss
    if shard.z_loss:
        scale = grad_loss * (1 + 2 * shard.z_loss * (row_max + log_norm))
    grad = probs.mul_(scale[:, None])
    if eps:
        grad.sub_(grad_loss[:, None] * (eps / shard.vocab_size))
    in_slice, index = _local_target(target, shard)
    hit = torch.where(in_slice, -(1 - eps) * grad_loss, 0.0)
    return grad.scatter_add_(-1, index[:, None], hit[:, None])


class _VocabParallelFunction(torch.autograd.Function):
    """Per-token loss ``[N]`` of ``[N, V_local]`` logits; backward is local."""

    @staticmethod
    def forward(ctx: Any, logits: Tensor, target: Tensor, shard: _Shard) -> Tensor:
        row_max, sums = _global_stats(logits, target, shard)
        ctx.save_for_backward(logits, target, row_max, sums[:, 0].log())
        ctx.shard = shard
        return _token_loss(row_max, sums, target, shard)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx: Any, grad_token: Tensor) -> tuple[Tensor | None, None, None]:
        if not ctx.needs_input_grad[0]:
            return None, None, None
        logits, target, row_max, log_norm = ctx.saved_tensors
        shard: _Shard = ctx.shard
        grad_loss = torch.where(target != shard.ignore_index, grad_token.to(row_max.dtype), 0.0)
        grad_logits = torch.empty_like(logits)
        for rows in row_chunks(logits.shape[0], shard.local_size):
            grad_logits[rows] = _logit_grad(
                logits[rows], row_max[rows], log_norm[rows], target[rows], grad_loss[rows], shard
            )
        return grad_logits, None, None


class _LinearVocabParallelFunction(torch.autograd.Function):
    """Per-token loss ``[N]`` of ``hidden @ weight.T + bias``, chunked; backward recomputes."""

    @staticmethod
    def forward(
        ctx: Any,
        hidden: Tensor,
        weight: Tensor,
        bias: Tensor | None,
        target: Tensor,
        shard: _Shard,
        chunk_rows: int,
    ) -> Tensor:
        dtype = compute_dtype(hidden.dtype)
        num_tokens = hidden.shape[0]
        token_loss = torch.zeros(num_tokens, dtype=dtype, device=hidden.device)
        row_max = torch.zeros(num_tokens, dtype=dtype, device=hidden.device)
        log_norm = torch.zeros(num_tokens, dtype=dtype, device=hidden.device)
        with torch.no_grad():
            for index in scored_chunks(target, shard.ignore_index, chunk_rows):
                logits = chunk_logits(hidden[index], weight, bias).to(dtype)
                chunk_max, sums = _global_stats(logits, target[index], shard)
                token_loss[index] = _token_loss(chunk_max, sums, target[index], shard)
                row_max[index] = chunk_max
                log_norm[index] = sums[:, 0].log()
        ctx.save_for_backward(hidden, weight, bias, target, row_max, log_norm)
        ctx.shard = shard
        ctx.chunk_rows = chunk_rows
        return token_loss

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(
        ctx: Any, grad_token: Tensor
    ) -> tuple[Tensor | None, Tensor | None, Tensor | None, None, None, None]:
        hidden, weight, bias, target, row_max, log_norm = ctx.saved_tensors
        shard: _Shard = ctx.shard
        needs = ctx.needs_input_grad
        dtype = row_max.dtype
        grad_loss = grad_token.to(dtype)
        grads = HeadGrads.zeros(hidden, weight, dtype, needs)
        for index in scored_chunks(target, shard.ignore_index, ctx.chunk_rows):
            chunk_hidden = hidden[index]
            grad_logits = _logit_grad(
                chunk_logits(chunk_hidden, weight, bias).to(dtype),
                row_max[index],
                log_norm[index],
                target[index],
                grad_loss[index],
                shard,
            ).to(hidden.dtype)
            grads.add_chunk(index, chunk_hidden, weight, grad_logits)
        if needs[0]:
            # Each rank holds its slice's share of d loss / d hidden; summed in the compute dtype.
            dist.all_reduce(grads.hidden, op=dist.ReduceOp.SUM, group=shard.group)
        return (*grads.for_inputs(hidden, weight, bias), None, None, None)
