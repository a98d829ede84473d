"""The one place a backend is chosen for a chunk of loss rows.

Every loss that reduces logits row by row calls :func:`rows_loss` for each chunk; none of them
picks a backend itself. The Triton kernel (:mod:`crossent.kernels.triton_rows`) runs on CUDA when
Triton is installed. On a CPU, large chunks of the common case (class targets, no weights,
smoothing or soft-cap) take the loops ``torch.compile`` fuses (:mod:`crossent.kernels.compiled`).
The PyTorch arithmetic (:mod:`crossent.kernels.torch_rows`) runs everywhere
else, for what the others do not cover, and for rows that are not finite. All give the same
numbers up to rounding.
"""

from __future__ import annotations

import os

import torch
from torch import Tensor

from crossent.kernels.compiled import compiled_rows, use_compiled
from crossent.kernels.options import ChunkLoss, LossOptions, RowUpstream
from crossent.kernels.torch_rows import torch_rows
from crossent.kernels.triton_rows import triton_available, triton_rows


def use_triton(tensor: Tensor, weighted: bool, soft: bool) -> bool:
    """Whether a chunk of ``tensor`` should go through the Triton kernel.

    ``CROSSENT_KERNEL=torch`` or ``=triton`` overrides the automatic choice, which is Triton for
    CUDA tensors when it is installed. Class weights and probability targets always use PyTorch.
    """
    if weighted or soft:
        return False
    choice = os.environ.get("CROSSENT_KERNEL", "auto")
    if choice == "torch":
        return False
    if choice == "triton":
        return True
    return tensor.is_cuda and triton_available()


def rows_loss(
    logits: Tensor,
    target: Tensor,
    options: LossOptions,
    *,
    weight: Tensor | None = None,
    upstream: RowUpstream | None = None,
) -> ChunkLoss:
    """Loss terms of a chunk of ``[r, V]`` raw logits, on the backend that suits it.

    Two modes. Forward only (no ``upstream``): ``logits`` is read, not changed. Forward with the
    gradient in place: given ``upstream``, the ``[r]`` gradients of each row's cross-entropy and
    z-loss term (any floating dtype; ignored rows get none), ``logits`` is overwritten by the
    gradient of ``upstream.ce * ce + upstream.z * z_loss * lse**2``, in its own dtype.

    Args:
        logits: ``[r, V]`` unnormalised scores, before soft-capping.
        target: ``[r]`` int64 class ids (or ``options.ignore_index``), or ``[r, V]``
            probabilities.
        options: ignore index, label smoothing, z-loss coefficient and soft-cap.
        weight: ``[V]`` class weights, or None.
        upstream: the rows' upstream gradients, or None for the forward only.

    Returns:
        The rows' cross-entropy (z-loss excluded), logsumexp and top-1 correctness, in the
        compute dtype on the PyTorch path and fp32 from the Triton kernel.
    """
    weighted, soft = weight is not None, torch.is_floating_point(target)
    if use_triton(logits, weighted, soft):
        return triton_rows(logits, target, options, upstream)
    if use_compiled(logits, options, weighted, soft):
        terms = compiled_rows(logits, target, options, upstream)
        if terms is not None:  # None: a non-finite row, left to the eager path's policies
            return terms
    return torch_rows(logits, target, options, weight, upstream)
