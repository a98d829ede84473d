"""crossent.binary_cross_entropy against ``F.binary_cross_entropy_with_logits``, value and gradient.

The ground truth is PyTorch in float64 on the same (dtype-rounded) inputs; PyTorch at the tested
dtype sets the tolerance (see ``oracles.py``).
"""

from __future__ import annotations

import itertools

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor

from crossent import binary_cross_entropy
from oracles import assert_no_worse_than_torch, loss_and_grad

DTYPES = [torch.float64, torch.float32, torch.float16, torch.bfloat16]
SHAPES = [(7,), (3, 5), (2, 3, 4)]
REDUCTIONS = ["none", "sum", "mean"]


def _broadcast_weight_shape(shape: tuple[int, ...]) -> tuple[int, ...]:
    """A weight that must be broadcast: one per row for 2-D and up, a single scale for 1-D."""
    return (shape[-2], 1) if len(shape) >= 2 else (1,)


def _make_case(
    shape: tuple[int, ...], soft: bool, seed: int
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    generator = torch.Generator().manual_seed(seed)
    logits = torch.randn(shape, generator=generator, dtype=torch.float64) * 4
    if soft:
        target = torch.rand(shape, generator=generator, dtype=torch.float64)
    else:
        target = torch.randint(0, 2, shape, generator=generator).double()
    weight = torch.rand(_broadcast_weight_shape(shape), generator=generator, dtype=torch.float64)
    pos_weight = torch.rand(shape[-1], generator=generator, dtype=torch.float64) * 3 + 0.1
    return logits, target, weight + 0.1, pos_weight


GRID = list(itertools.product(SHAPES, REDUCTIONS, [False, True], [False, True], [False, True]))


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize(("shape", "reduction", "weighted", "pos_weighted", "soft"), GRID)
def test_matches_torch(
    dtype: torch.dtype,
    shape: tuple[int, ...],
    reduction: str,
    weighted: bool,
    pos_weighted: bool,
    soft: bool,
) -> None:
    logits64, target64, weight64, pos_weight64 = _make_case(shape, soft, seed=sum(shape) + soft)
    logits, target = logits64.to(dtype), target64.to(dtype)
    weight = weight64.to(dtype) if weighted else None
    pos_weight = pos_weight64.to(dtype) if pos_weighted else None
    options = {"weight": weight, "pos_weight": pos_weight, "reduction": reduction}
    upstream = torch.rand(shape if reduction == "none" else (), dtype=torch.float64) + 0.5

    ours, ours_grad = loss_and_grad(
        binary_cross_entropy, logits, target, upstream.to(dtype), **options
    )
    assert ours.dtype == dtype
    assert ours_grad.dtype == dtype
    truth64_options = {
        "weight": weight.double() if weight is not None else None,
        "pos_weight": pos_weight.double() if pos_weight is not None else None,
        "reduction": reduction,
    }
    truth, truth_grad = loss_and_grad(
        F.binary_cross_entropy_with_logits,
        logits.double(),
        target.double(),
        upstream,
        **truth64_options,
    )
    theirs, theirs_grad = loss_and_grad(
        F.binary_cross_entropy_with_logits, logits, target, upstream.to(dtype), **options
    )
    assert_no_worse_than_torch(ours, theirs, truth, dtype, "loss")
    assert_no_worse_than_torch(ours_grad, theirs_grad, truth_grad, dtype, "gradient")


@pytest.mark.parametrize("pos_weighted", [False, True])
def test_extreme_logits_are_finite_and_exact(pos_weighted: bool) -> None:
    """Logits of +-1e4 in fp32: log-space evaluation gives the float64 value, not inf or NaN.

    (Moderate logits are left to the parity grid: there PyTorch's own formula cancels too.)
    """
    logits = torch.tensor(
        [[1e4, -1e4, 1e4, -1e4, 1e4, -1e4], [1e4 - 1, -1e4 + 1, 1e4, -1e4, 80.0, -80.0]]
    )
    target = torch.tensor([[1.0, 0.0, 0.0, 1.0, 0.5, 0.25], [0.3, 0.7, 1.0, 0.0, 0.0, 1.0]])
    pos_weight = torch.tensor([2.0, 0.5, 3.0, 1.5, 0.25, 4.0]) if pos_weighted else None
    one = torch.tensor(1.0)

    ours, ours_grad = loss_and_grad(
        binary_cross_entropy, logits, target, one, pos_weight=pos_weight, reduction="none"
    )
    truth, truth_grad = loss_and_grad(
        F.binary_cross_entropy_with_logits,
        logits.double(),
        target.double(),
        one.double(),
        pos_weight=pos_weight.double() if pos_weight is not None else None,
        reduction="none",
    )
    assert torch.isfinite(ours).all()
    assert torch.isfinite(ours_grad).all()
    eps = torch.finfo(torch.float32).eps
    # A few roundings: the loss is a sum of two terms of size 1e4 in fp32.
    torch.testing.assert_close(ours.double(), truth, rtol=4 * eps, atol=0.0)
    torch.testing.assert_close(ours_grad.double(), truth_grad, rtol=0.0, atol=eps)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=str)
def test_half_precision_is_computed_in_fp32(dtype: torch.dtype) -> None:
    """Documented: fp16/bf16 inputs are computed in fp32, so only the final rounding is lost.

    Logits of size ~1 keep fp32's own cancellation (x - logsigmoid(x)) far below fp16's step.
    """
    generator = torch.Generator().manual_seed(6)
    logits = torch.randn(4, 9, generator=generator).to(dtype)
    target = torch.rand(4, 9, generator=generator).to(dtype)
    pos_weight = (torch.rand(9, generator=generator) + 0.5).to(dtype)
    ours = binary_cross_entropy(logits, target, pos_weight=pos_weight, reduction="none")
    truth = F.binary_cross_entropy_with_logits(
        logits.double(), target.double(), pos_weight=pos_weight.double(), reduction="none"
    )
    torch.testing.assert_close(ours.double(), truth, rtol=torch.finfo(dtype).eps, atol=0.0)


def test_closed_form_at_zero_logit() -> None:
    """sigmoid(0) = 1/2: every element costs ln 2 times its positive or negative weight."""
    target = torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]])
    pos_weight = torch.tensor([2.0, 3.0, 5.0])
    loss = binary_cross_entropy(
        torch.zeros(2, 3, dtype=torch.float64), target, pos_weight=pos_weight, reduction="sum"
    )
    assert loss.item() == pytest.approx((2 + 1 + 5 + 1 + 3 + 1) * torch.log(torch.tensor(2.0)))


def test_empty_mean_is_zero() -> None:
    """The documented policy: the mean of nothing is 0 with a (empty) gradient, not NaN."""
    logits = torch.zeros(0, 3, requires_grad=True)
    loss = binary_cross_entropy(logits, torch.zeros(0, 3))
    loss.backward()  # type: ignore[no-untyped-call]
    assert loss.item() == 0.0
    assert logits.grad is not None
    assert logits.grad.shape == (0, 3)
