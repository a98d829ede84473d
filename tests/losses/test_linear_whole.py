"""A small bf16/fp16 batch held whole by the fused loss (issue 14): when the logits of every scored
token take no more memory than the chunked walk's fp32 sum of ``grad_weight``, the head is three
full-size matrix products. The oracles are PyTorch in float64 on the same rounded inputs and
PyTorch's own loss in the inputs' dtype; no test here asserts a timing."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor

from crossent.kernels import chunks, default_chunk_rows
from crossent.losses._lm_head import holds_whole_gradient
from crossent.losses.linear import linear_cross_entropy
from oracles import assert_no_worse_than_torch

LOW = [torch.bfloat16, torch.float16]
TOKENS, DIM, VOCAB = 96, 48, 700


def _head(vocab: int, dim: int, dtype: torch.dtype = torch.bfloat16) -> Tensor:
    # Only the shape, dtype and device matter to the decision: no memory for a real head.
    return torch.zeros((), dtype=dtype).expand(vocab, dim)


@pytest.mark.parametrize("dtype", LOW, ids=str)
def test_a_batch_is_held_whole_when_its_logits_take_no_more_than_the_fp32_sum(
    dtype: torch.dtype,
) -> None:
    # GPT-2's head: the fp32 sum is 4 * 50304 * 768 bytes and a chunk 625 bf16 rows, so the
    # largest whole batch has 2 * 768 + 625 = 2161 rows.
    gpt2 = _head(50304, 768, dtype)
    rows = default_chunk_rows(50304, 2)
    assert rows == 625
    assert holds_whole_gradient(1024, gpt2, dtype, rows)
    assert holds_whole_gradient(2161, gpt2, dtype, rows)
    assert not holds_whole_gradient(2162, gpt2, dtype, rows)
    assert not holds_whole_gradient(8192, gpt2, dtype, rows)
    # Llama-3's head scaled to a CPU (d = 2048): the benchmark's 4096 tokens fit.
    assert holds_whole_gradient(4096, _head(128256, 2048, dtype), dtype, 245)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=str)
def test_fp32_and_fp64_are_always_walked_in_chunks(dtype: torch.dtype) -> None:
    """Their gradient of the head is the returned tensor itself: no fp32 sum to save."""
    assert not holds_whole_gradient(1, _head(50304, 768, dtype), dtype, 312)


def test_a_head_on_another_device_is_walked_in_chunks() -> None:
    head = torch.empty(50304, 768, dtype=torch.bfloat16, device="meta")
    assert not holds_whole_gradient(1024, head, torch.bfloat16, 625)


def _inputs(dtype: torch.dtype) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    generator = torch.Generator().manual_seed(11)
    hidden = torch.randn(TOKENS, DIM, generator=generator, dtype=torch.float64)
    weight = torch.randn(VOCAB, DIM, generator=generator, dtype=torch.float64) * (2 / DIM**0.5)
    bias = torch.randn(VOCAB, generator=generator, dtype=torch.float64) * 0.1
    target = torch.randint(0, VOCAB, (TOKENS,), generator=generator)
    target[::5] = -100  # ignored tokens are left out of the whole batch too
    return hidden.to(dtype), weight.to(dtype), bias.to(dtype), target


def _loss_and_grads(
    function: Callable[..., Tensor],
    inputs: tuple[Tensor, ...],
    dtype: torch.dtype,
    **options: float,
) -> list[Tensor]:
    """The loss times 0.37 (an upstream gradient that is not 1) and the gradients of hidden,
    weight and bias, computed by ``function`` on leaves of ``inputs`` in ``dtype``."""
    hidden, weight, bias, target = inputs
    leaves = [t.detach().to(dtype).requires_grad_(True) for t in (hidden, weight, bias)]
    loss = function(leaves[0], leaves[1], target, leaves[2], **options)
    (loss * 0.37).backward()  # type: ignore[no-untyped-call]
    grads = [leaf.grad for leaf in leaves if leaf.grad is not None]
    assert len(grads) == 3
    return [loss.detach() * 0.37, *grads]


def _torch_loss(
    hidden: Tensor,
    weight: Tensor,
    target: Tensor,
    bias: Tensor,
    *,
    label_smoothing: float = 0.0,
    z_loss: float = 0.0,
) -> Tensor:
    """PyTorch's loss on materialised logits, with z-loss as crossent defines it: the mean over
    the scored tokens of ``z_loss * logsumexp**2`` added."""
    logits = F.linear(hidden, weight, bias)
    loss = F.cross_entropy(logits, target, label_smoothing=label_smoothing)
    lse = torch.logsumexp(logits, -1)[target != -100]
    return loss + z_loss * lse.square().mean()


@pytest.mark.parametrize("dtype", LOW, ids=str)
@pytest.mark.parametrize(
    "options", [{}, {"label_smoothing": 0.1}, {"z_loss": 1e-3}], ids=["plain", "smooth", "z"]
)
def test_the_whole_batch_is_no_worse_than_torch(
    dtype: torch.dtype, options: dict[str, float], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Loss and all three gradients, with ignored tokens and a bias, rows reduced in blocks."""
    # A budget of 10 rows of logits: the whole batch's rows are reduced in 8 blocks.
    monkeypatch.setattr(chunks, "HEAD_CHUNK_BYTES", 10 * 2 * VOCAB)
    inputs = _inputs(dtype)
    assert holds_whole_gradient(TOKENS, inputs[1], dtype, default_chunk_rows(VOCAB, 2))
    ours = _loss_and_grads(linear_cross_entropy, inputs, dtype, **options)
    theirs = _loss_and_grads(_torch_loss, inputs, dtype, **options)
    truth = _loss_and_grads(_torch_loss, inputs, torch.float64, **options)
    assert [t.dtype for t in ours] == [torch.float32, dtype, dtype, dtype]
    for name, mine, torch_value, exact in zip(
        ["loss", "hidden", "weight", "bias"], ours, theirs, truth, strict=True
    ):
        assert_no_worse_than_torch(mine, torch_value, exact, dtype, name)


@pytest.mark.parametrize("dtype", LOW, ids=str)
def test_the_whole_batch_and_the_chunked_walk_agree(dtype: torch.dtype) -> None:
    """The gradient of the head from one product over every row, rounded once, and from the
    walk's fp32 sum of 24 rounded chunk products (chunk_rows=4): both as close to float64 as
    PyTorch's, and their mean error within 2 % of each other (both are dominated by the bf16
    rounding of the logit gradient they share)."""
    inputs = _inputs(dtype)
    truth = _loss_and_grads(_torch_loss, inputs, torch.float64)[2]
    theirs = _loss_and_grads(_torch_loss, inputs, dtype)[2]
    whole = _loss_and_grads(linear_cross_entropy, inputs, dtype)[2]
    walked = _loss_and_grads(linear_cross_entropy, inputs, dtype, chunk_rows=4)[2]
    errors = []
    for name, ours in (("whole", whole), ("walked", walked)):
        assert_no_worse_than_torch(ours, theirs, truth, dtype, name)
        errors.append((ours.double() - truth).abs().mean().item())
    assert abs(errors[0] - errors[1]) <= 0.02 * max(errors), errors


def test_a_whole_batch_with_nothing_scored_has_zero_loss_and_zero_gradients() -> None:
    hidden, weight, bias, _ = _inputs(torch.bfloat16)
    nothing = (hidden, weight, bias, torch.full((TOKENS,), -100))
    loss, *grads = _loss_and_grads(linear_cross_entropy, nothing, torch.bfloat16)
    assert loss.item() == 0.0
    for grad in grads:
        assert grad.dtype == torch.bfloat16
        assert not bool(grad.any())
