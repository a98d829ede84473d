"""How a chunk of loss rows runs fast on a device, behind one signature.

:func:`rows_loss` is what the losses call for each chunk of logits: the Triton kernel of
:mod:`crossent.kernels.rows` on CUDA (when Triton is installed), the PyTorch arithmetic of
:mod:`crossent.losses._chunk` everywhere else. Both give the same numbers.
"""

from __future__ import annotations

import torch
from torch import Tensor

from crossent.kernels.rows import triton_rows, use_triton
from crossent.losses._chunk import (
    ChunkLoss,
    LossOptions,
    capped,
    chunk_logit_grad_,
    chunk_loss,
    compute_dtype,
)

# The PyTorch path walks a chunk in blocks of about this many logits (2 MiB of fp32), so that
# its five passes over a block (log-softmax, max, exp, scale, copy) hit the cache, not memory.
_CACHE_ELEMENTS = 1 << 19


def rows_loss(
    logits: Tensor,
    target: Tensor,
    options: LossOptions,
    grad_ce: Tensor | None = None,
    grad_z: Tensor | None = None,
) -> tuple[ChunkLoss, Tensor | None]:
    """Loss terms of ``[r, V]`` raw logits against ``[r]`` class ids (no class weights).

    With ``grad_ce`` and ``grad_z``, the ``[r]`` upstream gradients of each row's cross-entropy
    and z-loss term, ``logits`` is overwritten in place by its gradient and also returned (in
    the logits' dtype; a copy if ``logits`` was not contiguous).
    """
    if use_triton(logits, weighted=False, soft=False):
        rows = logits.contiguous()
        terms = triton_rows(rows, target, options, grad_ce, grad_z)
        return terms, (rows if grad_ce is not None else None)

    num_rows, num_classes = logits.shape
    dtype = compute_dtype(logits.dtype)
    ce = torch.empty(num_rows, dtype=dtype, device=logits.device)
    lse = torch.empty_like(ce)
    correct = torch.empty(num_rows, dtype=torch.bool, device=logits.device)
    upstream = (grad_ce, grad_z) if grad_ce is not None and grad_z is not None else None
    step = max(1, _CACHE_ELEMENTS // num_classes)
    for start in range(0, num_rows, step):
        block = slice(start, start + step)
        z = capped(logits[block], options, dtype)
        block_target = target[block]
        terms = chunk_loss(z, block_target, None, options, dtype, keep_probs=upstream is not None)
        ce[block], lse[block], correct[block] = terms.ce, terms.lse, terms.correct
        if upstream is None or terms.probs is None:
            continue
        scored = block_target != options.ignore_index
        grad_ce_block = upstream[0][block].to(dtype).where(scored, 0.0)
        grad_z_block = upstream[1][block].to(dtype)
        grad_softmax = (2 * options.z_loss * terms.lse * grad_z_block).where(scored, 0.0)
        logits[block] = chunk_logit_grad_(
            terms.probs, z, block_target, None, options, grad_ce_block, grad_softmax
        )
    return ChunkLoss(ce, lse, correct), (logits if upstream is not None else None)
