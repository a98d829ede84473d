"""What goes into a chunk of loss rows and what comes out: options, gradients, results, dtype.

Every backend (:mod:`crossent.kernels.torch_rows`, :mod:`crossent.kernels.triton_rows`) takes a
:class:`LossOptions` (and, for a gradient, a :class:`RowUpstream`) and returns a
:class:`ChunkLoss`, computed in :func:`compute_dtype` of the logits; the losses validate the
options before they build one.
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
    """Forward results for a chunk of ``r`` rows, in the compute dtype (fp32 from Triton).

    Attributes:
        ce: ``[r]`` cross-entropy per row in nats (class weight and label smoothing included,
            z-loss excluded), 0 where the target is ignored.
        lse: ``[r]`` logsumexp of the (soft-capped) logits.
        correct: ``[r]`` bool, the target is the argmax (False where ignored).
    """

    ce: Tensor
    lse: Tensor
    correct: Tensor


@dataclass(frozen=True)
class RowUpstream:
    """The upstream gradients of a chunk of ``r`` rows, for a gradient computed in place.

    Attributes:
        ce: ``[r]`` gradient of each row's cross-entropy (ignored rows get none, whatever it is).
        z: ``[r]`` gradient of each row's z-loss term ``z_loss * lse**2``.
    """

    ce: Tensor
    z: Tensor


def compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype a loss computes in: fp64 stays fp64; everything else is computed in fp32."""
    return torch.float64 if dtype == torch.float64 else torch.float32
