"""Loops of a fused LM head that ``torch.compile`` fuses on a CPU: the common rows of a chunk and
the fp32 sum of a low-precision ``grad_weight``.

PyTorch's eager CPU kernels spend more passes on these than the arithmetic needs, measured on the
Xeon of docs/benchmarks.md (2 threads, under load, V=50304, d=768):

* ``torch.max(dim)`` with its indices is a slow reduction, and in PyTorch 2.13 there is no
  mixed-dtype softmax on a CPU: ``softmax(bf16, dtype=float32)`` converts the block to fp32
  first and the gradient is converted back. A chunk of 667 bf16 rows took 0.43 s of eager rows
  against 0.13 s for one of its three matrix products.
* ``fp32_sum.add_(bf16_product)`` of a ``[V, d]`` gradient took 0.15 s, the same sum from a
  compiled loop 0.03 s; and rounding the sum to bf16 into a fresh tensor pays for its pages.

For the rows (class-index targets; no class weights, label smoothing or soft-cap) inductor writes
three vectorised C++ loops, each reading the logits in their own dtype and computing in fp32
registers: the row maximum; the sum of ``exp(z - max)`` with the count of logits equal to the
maximum; and, for a gradient, ``exp(z - max) * scale`` written over the logits in place. The
gradient at the target and the per-row results are computed on ``[r]`` vectors afterwards, so
nothing chunk-sized is allocated. Top-1 correctness needs no argmax pass: a row is right when its
target's logit is the maximum and the maximum is unique; the rare rows with a tie at the maximum
ask ``argmax`` (the first maximal index, as PyTorch defines it) for just those rows.

Rows whose maximum or log-sum-exp is not finite (NaN, infinities) are left untouched and
:func:`compiled_rows` returns None: the eager path (:mod:`crossent.kernels.torch_rows`) then
applies the losses' documented policies. A first compilation takes about 15 s (inductor's cache
on disk serves later processes), so only large tensors come here, and only once a process has
done enough work for the compilation to pay (:func:`compiled_wanted`); a machine where
compilation fails (no C++ compiler) warns once and stays eager.
"""

from __future__ import annotations

import functools
import os
import warnings
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from crossent.kernels.options import ChunkLoss, LossOptions, RowUpstream

# 4 Mi elements: about 80 rows at V=50k. Below it a chunk is cheap either way.
MIN_COMPILED_SIZE = 1 << 22
# A process compiles only once its eager loops have handled this many elements of large tensors
# (256 Mi: about 5,000 tokens at V=50k, a second or two of eager rows), so that a short job (an
# eval of a few sentences, a test) never waits for a compilation longer than itself.
WARMUP_ELEMENTS = 1 << 28

_DTYPES = (torch.float32, torch.bfloat16, torch.float16)
_broken: list[str] = []  # why compilation failed in this process, once it has
_handled = [0]  # elements of large tensors seen so far in this process


def compiled_wanted(tensor: Tensor) -> bool:
    """Whether ``tensor`` (a chunk of logits, a gradient sum) should go through a compiled loop.

    A CPU tensor of fp32, bf16 or fp16 of at least :data:`MIN_COMPILED_SIZE` elements, once the
    process has seen :data:`WARMUP_ELEMENTS` of them, on a machine where compilation has not
    failed. ``CROSSENT_KERNEL=torch`` keeps everything eager; ``=compiled`` compiles at once,
    whatever the size (for tests).
    """
    choice = os.environ.get("CROSSENT_KERNEL", "auto")
    if _broken or choice not in ("auto", "compiled"):
        return False
    if tensor.device.type != "cpu" or tensor.dtype not in _DTYPES:
        return False
    if choice == "compiled":
        return True
    if tensor.numel() < MIN_COMPILED_SIZE:
        return False
    _handled[0] += tensor.numel()
    return _handled[0] > WARMUP_ELEMENTS


def warmup_pending() -> bool:
    """Whether :func:`compiled_wanted` still holds large tensors back for the warm-up: True
    until the process has handled :data:`WARMUP_ELEMENTS` (benchmarks run until it is False,
    to time what a long job runs)."""
    choice = os.environ.get("CROSSENT_KERNEL", "auto")
    return choice == "auto" and not _broken and _handled[0] <= WARMUP_ELEMENTS


def use_compiled(logits: Tensor, options: LossOptions, weighted: bool, soft: bool) -> bool:
    """Whether a chunk of ``[r, V]`` logits should take :func:`compiled_rows`: the case it covers
    (contiguous rows, class targets, none of class weights, label smoothing or soft-cap), and
    :func:`compiled_wanted`."""
    covered = not (weighted or soft or options.label_smoothing or options.softcap is not None)
    # Contiguous only: a loop is compiled for the strides it first sees.
    return covered and logits.dim() == 2 and logits.is_contiguous() and compiled_wanted(logits)


def compiled_rows(
    logits: Tensor, target: Tensor, options: LossOptions, upstream: RowUpstream | None = None
) -> ChunkLoss | None:
    """Loss terms of ``[r, V]`` logits against ``[r]`` class ids, as :func:`rows_loss` defines
    them; with ``upstream``, ``logits`` is overwritten by its gradient.

    Returns None, with ``logits`` unchanged, when a row's maximum or log-sum-exp is not finite
    or compilation failed: the caller then takes the eager path.
    """
    stats = _call("row_stats", logits)
    if stats is None:
        return None
    top, total, ties = stats
    log_total = total.log()
    lse = top + log_total
    if not bool(torch.isfinite(lse).all()):
        return None
    scored = target != options.ignore_index
    safe = target.masked_fill(~scored, 0)
    rows = torch.arange(len(target), device=target.device)
    target_logit = logits[rows, safe].float()
    ce = torch.where(scored, (top - target_logit) + log_total, 0.0)
    at_max = (target_logit == top) & scored
    correct = at_max & (ties == 1)
    tied = (at_max & (ties > 1)).nonzero().squeeze(-1)
    if tied.numel():  # a tie at the maximum: the first maximal index is the prediction
        correct[tied] = logits[tied].argmax(-1) == target[tied]
    if upstream is not None:
        grad_ce = upstream.ce.float().where(scored, 0.0)
        # d(z_loss * lse^2)/dz = 2 * z_loss * lse * softmax(z)
        scale = grad_ce + (2 * options.z_loss * lse * upstream.z.float()).where(scored, 0.0)
        ratio = scale / total
        at_target = torch.exp(target_logit - top) * ratio - grad_ce
        if _call("scaled_exp_", logits, top, ratio) is None:
            return None  # a failed compilation writes nothing: the eager path starts afresh
        logits[rows, safe] = at_target.to(logits.dtype)  # one rounding, from fp32
    return ChunkLoss(ce, lse, correct)


def add_into_(total: Tensor, product: Tensor) -> None:
    """``total += product`` for an fp32 ``total`` and a bf16/fp16 ``product`` of its shape,
    each element widened in registers (no fp32 copy of ``product``)."""
    if not compiled_wanted(product) or _call("add_widened_", total, product) is None:
        total.add_(product)


def scaled_to(
    total: Tensor, scale: Tensor | None, dtype: torch.dtype, out: Tensor | None = None
) -> Tensor:
    """``(total * scale).to(dtype)`` (``scale`` a 0-d tensor, or None for 1) in one pass, rounded
    once; written into ``out`` (``total``'s shape, ``dtype``) when given."""
    if total.dtype == dtype and scale is None:
        return total
    if total.dtype != dtype and compiled_wanted(total):
        factor = torch.ones((), dtype=total.dtype) if scale is None else scale.to(total.dtype)
        if out is None:
            out = torch.empty(total.shape, dtype=dtype, device=total.device)
        if _call("scale_round_", out, total, factor) is not None:
            return out
    if scale is None:
        result = total
    else:  # a 0-d fp32 factor: a bf16 ``total`` times the unrounded scale, rounded once
        result = total * scale.to(torch.promote_types(total.dtype, torch.float32))
    return result.to(dtype) if out is None else out.copy_(result)


def _row_stats(logits: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Each row's maximum, sum of ``exp(z - max)`` and count of logits equal to the maximum."""
    z = logits.float()
    top = z.amax(-1, keepdim=True)
    total = torch.exp(z - top).sum(-1)
    ties = (z == top).sum(-1)
    return top.squeeze(-1), total, ties


def _scaled_exp_(logits: Tensor, top: Tensor, ratio: Tensor) -> None:
    """``logits <- exp(logits - top) * ratio`` row by row, in place, rounded once."""
    logits.copy_(torch.exp(logits.float() - top[:, None]) * ratio[:, None])


def _add_widened_(total: Tensor, product: Tensor) -> None:
    total.add_(product.float())


def _scale_round_(out: Tensor, total: Tensor, scale: Tensor) -> None:
    out.copy_(total * scale)


_LOOPS: dict[str, Callable[..., Any]] = {
    "row_stats": _row_stats,
    "scaled_exp_": _scaled_exp_,
    "add_widened_": _add_widened_,
    "scale_round_": _scale_round_,
}


@functools.cache
def _compiled(name: str) -> Callable[..., Any]:
    # dynamic: one compilation serves every chunk length, vocabulary size and width.
    return torch.compile(_LOOPS[name], dynamic=True, fullgraph=True)


def _call(name: str, *args: Any) -> Any:
    """The compiled loop ``name`` on ``args``; None (nothing written) if compilation fails."""
    if _broken:
        return None
    try:
        result = _compiled(name)(*args)
    except Exception as error:  # any failure of inductor means: stay eager
        _give_up(error)
        return None
    return True if result is None else result


def _give_up(error: Exception) -> None:
    first_line = (str(error).strip().splitlines() or [type(error).__name__])[0]
    _broken.append(first_line)
    warnings.warn(
        f"crossent: torch.compile failed ({first_line[:200]}); the loss stays on PyTorch's "
        "eager kernels in this process",
        RuntimeWarning,
        stacklevel=3,
    )
