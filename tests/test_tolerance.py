"""crossent.tolerance: the rule every parity test and ``crossent explain`` judge numbers by."""

from __future__ import annotations

import pytest
import torch

from crossent.tolerance import MARGIN_EPS, allowed_error, margin, worse_than_torch


@pytest.mark.parametrize(
    ("dtype", "epsilons", "eps"),
    [
        (torch.float64, 64, 2.0**-52),
        (torch.float32, 16, 2.0**-23),
        (torch.float16, 4, 2.0**-10),
        (torch.bfloat16, 4, 2.0**-7),
    ],
)
def test_margins_are_a_few_machine_epsilons(dtype: torch.dtype, epsilons: int, eps: float) -> None:
    assert MARGIN_EPS[dtype] == epsilons
    assert margin(dtype) == epsilons * eps
    assert allowed_error(0.5, dtype, scale=3.0) == 0.5 + epsilons * eps * 3.0


def test_an_integer_dtype_has_no_tolerance() -> None:
    with pytest.raises(ValueError, match=r"no tolerance for torch.int64; the rule covers float64"):
        margin(torch.int64)


def test_worse_than_pytorch_by_more_than_the_margin_is_flagged() -> None:
    """PyTorch's float32 softmax against float64 sets the budget; an error just inside it
    passes, one a few margins beyond it does not."""
    logits = torch.tensor([3.0, 1.0, -2.0, 0.5], dtype=torch.float64)
    truth = torch.softmax(logits, -1)
    torch_value = torch.softmax(logits.float(), -1)
    budget = (torch_value.double() - truth).abs() + margin(torch.float32) * (truth + truth.max())
    inside = truth + 0.5 * budget
    outside = truth.clone()
    outside[2] += 2 * budget[2]
    assert not worse_than_torch(inside, torch_value, truth, torch.float32).any()
    assert worse_than_torch(outside, torch_value, truth, torch.float32).tolist() == [
        False, False, True, False,
    ]  # fmt: skip
    assert not worse_than_torch(torch_value, torch_value, truth, torch.float32).any()
