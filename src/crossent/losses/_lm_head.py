"""The chunk walk of a fused LM-head loss, shared by the single-device and vocab-parallel ones.

:mod:`crossent.losses.linear` and :mod:`crossent.losses.parallel` never hold the ``[N, V]``
logits of ``hidden @ weight.T + bias``: they take the scored tokens a chunk at a time, compute
that chunk's logits, reduce them, and turn the chunk's logit gradient into the gradients of
``hidden``, ``weight`` and ``bias``. This module holds those three shared steps.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import Tensor

from crossent.kernels import add_into_, scaled_to


def scored_rows(target: Tensor, ignore_index: int) -> Tensor:
    """Indices ``[M]`` of the tokens whose target is scored, in order."""
    return (target != ignore_index).nonzero().squeeze(-1)


def scored_chunks(target: Tensor, ignore_index: int, chunk_rows: int) -> Iterator[Tensor]:
    """Indices ``[<= chunk_rows]`` of the tokens whose target is scored, a chunk at a time.

    Ignored tokens are dropped before any projection, so they cost nothing.
    """
    rows = scored_rows(target, ignore_index)
    for start in range(0, rows.numel(), chunk_rows):
        yield rows[start : start + chunk_rows]


def chunk_logits(
    hidden: Tensor, weight: Tensor, bias: Tensor | None, out: Tensor | None = None
) -> Tensor:
    """The raw ``[rows, V]`` logits of a chunk of ``[rows, d]`` hidden states, in their dtype;
    written into ``out`` (``[rows, V]``, contiguous) when given."""
    if out is None:
        return hidden @ weight.T if bias is None else torch.addmm(bias, hidden, weight.T)
    if bias is None:
        return torch.mm(hidden, weight.T, out=out)
    return torch.addmm(bias, hidden, weight.T, out=out)


class ChunkBuffer:
    """One ``[rows, V]`` buffer that every chunk's logits of a walk are written into.

    A fresh tensor per chunk costs its page faults each time: measured on the Xeon of
    docs/benchmarks.md, 25 ms for a 60 MiB chunk against 130 ms for its bf16 matrix product. The
    first chunk (the largest) is made as usual and kept; the later ones are written into its
    leading rows. Under autocast nothing is kept: an ``out=`` product would skip autocast's cast.
    """

    def __init__(self) -> None:
        self.buffer: Tensor | None = None

    def logits(self, hidden: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
        """:func:`chunk_logits` of this chunk, in the kept buffer once there is one."""
        rows = hidden.shape[0]
        buffer = self.buffer
        if buffer is not None and buffer.shape[0] >= rows and buffer.dtype == hidden.dtype:
            return chunk_logits(hidden, weight, bias, out=buffer[:rows])
        logits = chunk_logits(hidden, weight, bias)
        if torch.is_autocast_enabled(logits.device.type):
            return logits
        self.buffer = logits
        # A view like every later chunk's, so that a compiled loop sees one kind of tensor
        # (torch.compile guards on whether its input is a view, and compiles again if not).
        return logits[:rows]


def holds_whole_gradient(rows: int, weight: Tensor, dtype: torch.dtype, chunk_rows: int) -> bool:
    """Whether a bf16/fp16 loss of ``rows`` scored tokens takes less memory holding the logit
    gradient of all of them at once than walking them ``chunk_rows`` at a time (CPU only).

    Walking in chunks, a low-precision head needs an fp32 sum of ``grad_weight`` (``4 V d``
    bytes: rounding each chunk's product and summing in fp32, not bf16, is what keeps it exact)
    besides one chunk of logits. For a batch of at most about ``2 d`` tokens (GPT-2's head:
    2,100; Llama-3's, d = 2048: 4,300), the ``[rows, V]`` logits in their own dtype take no more
    than that, and holding them makes the head the floor's three matrix products at full size,
    each gradient one product rounded once, without the fp32 sum, its rounding pass and the
    repeated pass over ``grad_weight``. Measured in docs/benchmarks.md. GPUs keep the chunked
    walk until the whole batch has been measured on one.
    """
    if dtype not in (torch.bfloat16, torch.float16) or weight.device.type != "cpu":
        return False
    vocab, width = weight.shape
    itemsize = torch.finfo(dtype).bits // 8
    whole = rows * vocab * itemsize
    chunked = 4 * vocab * width + min(rows, chunk_rows) * vocab * itemsize
    return whole <= chunked


@dataclass
class HeadGrads:
    """Gradients of ``hidden`` ``[N, d]``, ``weight`` ``[V, d]`` and ``bias`` ``[V]``, summed
    chunk by chunk in the compute dtype (fp32 for bf16/fp16 inputs).

    ``needs`` says which of the three are wanted (autograd's ``needs_input_grad``): a frozen head
    or frozen hidden states saves its matrix product. The first chunk writes ``weight`` (no pass
    to zero it, none to add to zeros); read it through :meth:`weight_grad`, which zeroes it when
    no chunk came.
    """

    hidden: Tensor
    weight: Tensor
    bias: Tensor
    needs: tuple[bool, bool, bool]
    weight_written: bool = False
    # bf16/fp16: the last chunk's [V, d] product, its pages already touched, so the rounded sum
    # can be written there instead of into a fresh tensor (whose page faults cost as much as
    # the rounding itself).
    spare: Tensor | None = None

    @classmethod
    def zeros(
        cls,
        hidden: Tensor,
        weight: Tensor,
        dtype: torch.dtype,
        needs: tuple[bool, ...],
        products_dtype: torch.dtype | None = None,
    ) -> HeadGrads:
        """Sums in ``dtype``; ``products_dtype`` (default ``dtype``) for the gradients of
        ``hidden`` and ``weight`` when a single chunk writes each of them once (the whole
        batch, :func:`holds_whole_gradient`): its product, rounded once, is the gradient."""
        products = products_dtype or dtype
        return cls(
            torch.zeros(hidden.shape, dtype=products, device=hidden.device),
            torch.empty(weight.shape, dtype=products, device=weight.device),
            torch.zeros(weight.shape[0], dtype=dtype, device=weight.device),
            (needs[0], needs[1], needs[2]),
        )

    def add_chunk(
        self, index: Tensor, chunk_hidden: Tensor, weight: Tensor, grad_logits: Tensor
    ) -> None:
        """Add one chunk's share, from its ``[rows, V]`` logit gradient (``chunk_hidden``'s
        dtype) and its ``[rows, d]`` hidden states, the tokens ``index`` of the batch."""
        dtype = self.weight.dtype
        if self.needs[0]:
            self.hidden[index] = (grad_logits @ weight).to(dtype)  # each row written once
        if self.needs[1]:
            first = not self.weight_written
            if grad_logits.dtype == dtype:
                if first:
                    torch.mm(grad_logits.T, chunk_hidden, out=self.weight)  # (V, d)
                else:
                    self.weight.addmm_(grad_logits.T, chunk_hidden)
            else:
                # bf16/fp16: the product runs at the low-precision rate (it sums over the chunk's
                # rows in fp32 inside and rounds once); the chunks are summed in fp32, so no
                # rounding accumulates over the chunks as a low-precision running sum's would.
                # The previous chunk's product buffer, reused: no page faults for a fresh one.
                spare = self.spare
                if spare is not None and spare.dtype == grad_logits.dtype:
                    product = torch.mm(grad_logits.T, chunk_hidden, out=spare)  # (V, d)
                else:
                    product = grad_logits.T @ chunk_hidden
                if first:
                    self.weight.copy_(product)
                else:
                    add_into_(self.weight, product)
                self.spare = product
            self.weight_written = True
        if self.needs[2]:
            self.bias.add_(grad_logits.sum(0, dtype=self.bias.dtype))

    def weight_grad(self) -> Tensor:
        """The gradient of ``weight`` summed so far: zeros when no chunk was added."""
        if not self.weight_written:
            self.weight.zero_()
            self.weight_written = True
        return self.weight

    def weight_for(self, dtype: torch.dtype, scale: Tensor | None = None) -> Tensor:
        """The gradient of ``weight`` times ``scale`` (a 0-d tensor, None for 1) in ``dtype``,
        rounded once; for bf16/fp16 written over :attr:`spare` when there is one."""
        total = self.weight_grad()
        spare = self.spare if self.spare is not None and self.spare.dtype == dtype else None
        self.spare = None
        return scaled_to(total, scale, dtype, out=spare)

    def for_inputs(
        self, hidden: Tensor, weight: Tensor, bias: Tensor | None
    ) -> tuple[Tensor | None, Tensor | None, Tensor | None]:
        """The wanted gradients in the inputs' dtypes, None for the others, as backward returns."""
        return (
            self.hidden.to(hidden.dtype) if self.needs[0] else None,
            self.weight_for(weight.dtype) if self.needs[1] else None,
            self.bias.to(bias.dtype) if self.needs[2] and bias is not None else None,
        )
