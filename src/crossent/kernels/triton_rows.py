"""A Triton kernel for a chunk of cross-entropy rows: loss, logsumexp, top-1, gradient in place.

The GPU backend of :func:`crossent.kernels.rows_loss` (see :mod:`crossent.kernels.dispatch` for
when it is chosen): the matrix products of the losses stay with cuBLAS, and this kernel replaces
the PyTorch per-chunk arithmetic of :mod:`crossent.kernels.torch_rows` for class-index targets
without class weights (the language-model case). One program handles one row: a first sweep
over the vocabulary keeps an online maximum and sum of exponentials (and the target's logit, the
sum of logits for label smoothing and the argmax); a second sweep, when asked, overwrites the row
with the gradient of the loss. So the logits are read twice and written once, in fp32 registers
whatever their storage dtype.

Triton is an optional dependency, imported when first needed. ``TRITON_INTERPRET=1`` runs the same
kernel on the CPU (slowly), which is how the tests check it on machines without a GPU.
"""

from __future__ import annotations

import functools
from typing import Any

import torch
from torch import Tensor

from crossent.kernels.options import ChunkLoss, LossOptions, RowUpstream

_BLOCK = 1024


def triton_available() -> bool:
    """Whether the Triton package can be imported here."""
    try:
        import triton  # noqa: F401
    except ImportError:
        return False
    return True


@functools.cache
def _compiled_kernel() -> Any:
    """The kernel, imported on first use so that importing crossent never needs Triton."""
    from crossent.kernels._row_kernel import row_kernel

    return row_kernel


def triton_rows(
    logits: Tensor,
    target: Tensor,
    options: LossOptions,
    upstream: RowUpstream | None = None,
) -> ChunkLoss:
    """Loss terms of ``[r, V]`` raw logits against ``[r]`` class ids, on the Triton kernel.

    With ``upstream``, ``logits`` is overwritten in place by its gradient. ``ChunkLoss.ce`` excludes
    the z-loss term, as the PyTorch path's does; the results are fp32 whatever the logits' dtype.
    """
    # The kernel walks each row with unit stride; a strided chunk is worked on as a copy.
    rows = logits.contiguous()
    terms = _launch(rows, target, options, upstream)
    if upstream is not None and rows is not logits:
        logits.copy_(rows)
    return terms


def _launch(
    logits: Tensor, target: Tensor, options: LossOptions, upstream: RowUpstream | None
) -> ChunkLoss:
    rows, num_classes = logits.shape
    write_grad = upstream is not None
    ce = torch.empty(rows, dtype=torch.float32, device=logits.device)
    lse = torch.empty_like(ce)
    correct = torch.empty(rows, dtype=torch.bool, device=logits.device)
    if rows == 0:
        return ChunkLoss(ce, lse, correct)
    grad_ce_arg = upstream.ce.float().contiguous() if upstream is not None else ce
    grad_z_arg = upstream.z.float().contiguous() if upstream is not None else ce
    _compiled_kernel()[(rows,)](
        logits,
        logits.stride(0),
        target.contiguous(),
        grad_ce_arg,
        grad_z_arg,
        ce,
        lse,
        correct,
        num_classes,
        options.ignore_index,
        options.label_smoothing,
        options.z_loss,
        options.softcap if options.softcap is not None else 1.0,
        has_softcap=options.softcap is not None,
        write_grad=write_grad,
        block=_BLOCK,
    )
    return ChunkLoss(ce, lse, correct)
