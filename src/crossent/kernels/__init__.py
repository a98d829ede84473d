"""How a chunk of loss rows runs fast on a device, behind one signature.

:func:`rows_loss` is what the losses call for each chunk of logits: the Triton kernel of
:mod:`crossent.kernels.rows` on CUDA (when Triton is installed), the PyTorch arithmetic of
:mod:`crossent.losses._chunk` everywhere else. Both give the same numbers.
"""

from __future__ import annotations

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


def rows_loss(
    logits: Tensor,
    target: Tensor,
    options: LossOptions,
    grad_ce: Tensor | None = None,
    grad_z: Tensor | None = None,
) -> tuple[ChunkLoss, Tensor | None]:
    """Loss terms of ``[r, V]`` raw logits against ``[r]`` class ids (no class weights).

    With ``grad_ce`` and ``grad_z``, the ``[r]`` upstream gradients of each row's cross-entropy
    and z-loss term, also returns the gradient of the logits; it may be ``logits`` itself,
    overwritten in place (the Triton path), or a new fp32 tensor (the PyTorch path).
    """
    if use_triton(logits, weighted=False, soft=False):
        rows = logits.contiguous()
        terms = triton_rows(rows, target, options, grad_ce, grad_z)
        return terms, (rows if grad_ce is not None else None)
    dtype = compute_dtype(logits.dtype)
    z = capped(logits, options, dtype)
    terms = chunk_loss(z, target, None, options, dtype, keep_probs=grad_ce is not None)
    if grad_ce is None or grad_z is None or terms.probs is None:
        return terms, None
    scored = target != options.ignore_index
    grad_softmax = (2 * options.z_loss * terms.lse * grad_z.to(dtype)).where(scored, 0.0)
    grad = chunk_logit_grad_(
        terms.probs, z, target, None, options, grad_ce.to(dtype).where(scored, 0.0), grad_softmax
    )
    return terms, grad
