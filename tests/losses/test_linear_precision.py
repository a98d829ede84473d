"""The fused loss in bf16/fp16 (issue 14): the loss comes back in fp32, the gradient of the head
is summed over the chunks in fp32, and the chunk size follows the dtype. The oracle is PyTorch in
float64 on the same rounded inputs; no test here asserts a timing."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor

from crossent.kernels import chunks, default_chunk_rows
from crossent.losses.linear import linear_cross_entropy, loss_dtype
from oracles import assert_no_worse_than_torch

LOW = [torch.bfloat16, torch.float16]


def _inputs(tokens: int, dim: int, vocab: int, dtype: torch.dtype) -> tuple[Tensor, ...]:
    generator = torch.Generator().manual_seed(3)
    hidden = torch.randn(tokens, dim, generator=generator, dtype=torch.float64)
    weight = torch.randn(vocab, dim, generator=generator, dtype=torch.float64) * (2 / dim**0.5)
    target = torch.randint(0, vocab, (tokens,), generator=generator)
    return hidden.to(dtype), weight.to(dtype), target


def _grads64(hidden: Tensor, weight: Tensor, target: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Loss and gradients of hidden and weight in float64, by autograd on the full logits."""
    leaves = [t.double().requires_grad_(True) for t in (hidden, weight)]
    loss = F.cross_entropy(leaves[0] @ leaves[1].T, target)
    loss.backward()  # type: ignore[no-untyped-call]
    assert leaves[0].grad is not None
    assert leaves[1].grad is not None
    return loss.detach(), leaves[0].grad, leaves[1].grad


@pytest.mark.parametrize("dtype", [*LOW, torch.float32, torch.float64], ids=str)
def test_the_loss_of_low_precision_inputs_is_returned_in_fp32(dtype: torch.dtype) -> None:
    """A bf16 loss near 7 is a multiple of 1/32: the fp32 one keeps the digits the sum has."""
    hidden, weight, target = _inputs(64, 32, 1000, dtype)
    truth = F.cross_entropy(hidden.double() @ weight.double().T, target)
    for reduction in ("mean", "sum", "none"):
        with torch.no_grad():
            loss = linear_cross_entropy(hidden, weight, target, reduction=reduction)
        trained = linear_cross_entropy(
            hidden.requires_grad_(True), weight, target, reduction=reduction
        )
        expected = torch.float32 if dtype in LOW else dtype
        assert loss.dtype == trained.dtype == loss_dtype(dtype) == expected, reduction
        hidden = hidden.detach()
    mean = linear_cross_entropy(hidden, weight, target).double()
    resolution = torch.finfo(dtype).eps * truth.abs()
    # Far inside one step of the dtype at the loss's size, where a rounded loss could not be.
    assert (mean - truth).abs() < (resolution / 16 if dtype in LOW else resolution * 64)


@pytest.mark.parametrize("dtype", LOW, ids=str)
def test_low_precision_loss_and_grads_no_worse_than_torch_over_many_chunks(
    dtype: torch.dtype,
) -> None:
    """32 chunks of the default path (the fused softmax-gradient pass) against float64."""
    hidden, weight, target = _inputs(128, 48, 700, dtype)
    leaves = [t.detach().requires_grad_(True) for t in (hidden, weight)]
    loss = linear_cross_entropy(leaves[0], leaves[1], target, chunk_rows=4)
    loss.backward()  # type: ignore[no-untyped-call]
    theirs = [t.detach().requires_grad_(True) for t in (hidden, weight)]
    torch_loss = F.cross_entropy(theirs[0] @ theirs[1].T, target)
    torch_loss.backward()  # type: ignore[no-untyped-call]
    truth = _grads64(hidden, weight, target)
    got = [loss.detach(), leaves[0].grad, leaves[1].grad]
    want = [torch_loss.detach(), theirs[0].grad, theirs[1].grad]
    names = ["loss", "hidden", "weight"]
    for name, ours, torch_value, exact in zip(names, got, want, truth, strict=True):
        assert ours is not None
        assert torch_value is not None
        assert_no_worse_than_torch(ours, torch_value, exact, dtype, name)


def test_grad_weight_summed_in_fp32_beats_a_bf16_running_sum() -> None:
    """Liger-Kernel's users found a bf16 sum of ``grad_weight`` over many chunks 1.3-7x less
    accurate; crossent rounds each chunk's product once and sums the chunks in fp32."""
    hidden, weight, target = _inputs(512, 32, 300, torch.bfloat16)
    chunk_rows = 4  # 128 chunks
    leaf = weight.detach().requires_grad_(True)
    linear_cross_entropy(hidden, leaf, target, chunk_rows=chunk_rows).backward()  # type: ignore[no-untyped-call]
    assert leaf.grad is not None
    _, _, truth = _grads64(hidden, weight, target)
    # The alternative, built from the exact logit gradient: bf16 products in a bf16 running sum.
    logits = hidden.double() @ weight.double().T
    grad_logits = torch.softmax(logits, dim=-1)
    grad_logits[torch.arange(len(target)), target] -= 1
    grad_logits = (grad_logits / len(target)).to(torch.bfloat16)
    running = torch.zeros(weight.shape, dtype=torch.bfloat16)
    for start in range(0, len(target), chunk_rows):
        rows = slice(start, start + chunk_rows)
        running += grad_logits[rows].T @ hidden[rows]
    ours = (leaf.grad.double() - truth).abs().max().item()
    bf16_sum = (running.double() - truth).abs().max().item()
    assert ours < bf16_sum / 2, (ours, bf16_sum)


def test_the_chunk_holds_the_budget_of_logits_in_their_dtype(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    budget = chunks.HEAD_CHUNK_BYTES
    assert budget == 60 << 20
    # GPT-2 head: 60 MiB of fp32 logits are 312 rows of 50304; bf16 ones take half the bytes.
    assert default_chunk_rows(50304) == (60 << 20) // (4 * 50304) == 312
    assert default_chunk_rows(50304, 2) == (60 << 20) // (2 * 50304) == 625
    assert default_chunk_rows(128256) == 122
    assert default_chunk_rows(128256, 2) == 245
    assert default_chunk_rows(1 << 25) == 1  # never less than one token
    # The budget is read when a chunk is cut, and the fused loss cuts by its inputs' dtype.
    monkeypatch.setattr(chunks, "HEAD_CHUNK_BYTES", 2 * 4 * 100)
    assert default_chunk_rows(100) == 2
    assert default_chunk_rows(100, 2) == 4
