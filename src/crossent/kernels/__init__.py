"""How a chunk of loss rows runs: the backend layer beneath :mod:`crossent.losses`.

* :mod:`~crossent.kernels.options`: :class:`LossOptions` and :class:`RowUpstream` in,
  :class:`ChunkLoss` out, and the compute dtype;
* :mod:`~crossent.kernels.chunks`: how many rows a chunk holds (its budgets are read there);
* :mod:`~crossent.kernels.torch_rows`: the PyTorch arithmetic, every case, on every device;
* :mod:`~crossent.kernels.compiled`: the common rows and the low-precision gradient sum in loops
  that ``torch.compile`` fuses on a CPU;
* :mod:`~crossent.kernels.triton_rows` (and its kernel, ``_row_kernel``): the Triton kernel for
  unweighted class-index targets;
* :mod:`~crossent.kernels.dispatch`: :func:`rows_loss`, the one dispatcher every loss calls.

This package imports nothing of crossent outside it.
"""

from crossent.kernels.chunks import default_chunk_rows, row_chunks
from crossent.kernels.compiled import add_into_, scaled_to, warmup_pending
from crossent.kernels.dispatch import rows_loss, use_triton
from crossent.kernels.options import ChunkLoss, LossOptions, RowUpstream, compute_dtype
from crossent.kernels.torch_rows import probability_target_grad
from crossent.kernels.triton_rows import triton_available

__all__ = [
    "ChunkLoss",
    "LossOptions",
    "RowUpstream",
    "add_into_",
    "compute_dtype",
    "default_chunk_rows",
    "probability_target_grad",
    "row_chunks",
    "rows_loss",
    "scaled_to",
    "triton_available",
    "use_triton",
    "warmup_pending",
]
