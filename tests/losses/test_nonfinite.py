"""Non-finite logits, hidden states and weights: each loss does what PyTorch does, checked
against ``torch.nn.functional.cross_entropy`` in float64 on the same rows (issue 15)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import crossent

NAN, INF = float("nan"), float("inf")
ROWS = {
    "finite": [1.0, 2.0, 3.0, 0.5],
    "nan elsewhere": [1.0, NAN, 3.0, 0.5],
    "nan at the target": [NAN, 2.0, 3.0, 0.5],
    "+inf elsewhere": [1.0, INF, 3.0, 0.5],
    "+inf at the target": [INF, 2.0, 3.0, 0.5],
    "-inf at the target": [-INF, 2.0, 3.0, 0.5],
    "-inf elsewhere": [1.0, -INF, 3.0, 0.5],
    "all -inf": [-INF, -INF, -INF, -INF],
}


TOLERANCE = {torch.float64: 1e-12, torch.float32: 1e-6, torch.bfloat16: 1e-2}


def _same(ours: torch.Tensor, theirs: torch.Tensor) -> None:
    """Equal where finite (to the precision of ``ours``' dtype), and non-finite in the same
    places, the same way (NaN, +inf or -inf)."""
    tolerance = TOLERANCE[ours.dtype]
    ours, theirs = ours.double(), theirs.double()
    assert torch.equal(ours.isnan(), theirs.isnan())
    assert torch.equal(ours.isposinf(), theirs.isposinf())
    assert torch.equal(ours.isneginf(), theirs.isneginf())
    finite = theirs.isfinite()
    torch.testing.assert_close(ours[finite], theirs[finite], rtol=tolerance, atol=tolerance)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.bfloat16])
@pytest.mark.parametrize("case", sorted(ROWS))
@pytest.mark.parametrize("ignored", [False, True])
def test_a_non_finite_row_as_pytorch(case: str, dtype: torch.dtype, ignored: bool) -> None:
    row = torch.tensor([ROWS["finite"], ROWS[case]], dtype=torch.float64)
    target = torch.tensor([2, -100 if ignored else 0])
    ours_input = row.to(dtype).requires_grad_(True)
    theirs_input = row.to(dtype).double().requires_grad_(True)  # the same values, in float64
    ours = crossent.cross_entropy(ours_input, target, reduction="none")
    theirs = F.cross_entropy(theirs_input, target, reduction="none")
    _same(ours, theirs)
    ours.sum().backward()  # type: ignore[no-untyped-call]
    theirs.sum().backward()  # type: ignore[no-untyped-call]
    assert ours_input.grad is not None
    assert theirs_input.grad is not None
    _same(ours_input.grad, theirs_input.grad)
    for reduction in ("mean", "sum"):
        _same(
            crossent.cross_entropy(row.to(dtype), target, reduction=reduction),
            F.cross_entropy(row.to(dtype).double(), target, reduction=reduction),
        )


@pytest.mark.parametrize("where", ["hidden", "weight", "bias"])
@pytest.mark.parametrize("value", [NAN, INF])
def test_non_finite_inputs_of_the_fused_loss(where: str, value: float) -> None:
    """A non-finite hidden state, head weight or bias: the rows whose logits it reaches are
    what PyTorch makes of those logits; the other rows are untouched."""
    generator = torch.Generator().manual_seed(0)
    hidden = torch.randn(6, 8, generator=generator, dtype=torch.float64)
    weight = torch.randn(10, 8, generator=generator, dtype=torch.float64)
    bias = torch.randn(10, generator=generator, dtype=torch.float64)
    target = torch.tensor([1, 2, 3, 4, 5, 6])
    {"hidden": hidden[2], "weight": weight[7], "bias": bias[7:8]}[where][0] = value
    ours = crossent.linear_cross_entropy(
        hidden.float(), weight.float(), target, bias.float(), reduction="none"
    )
    logits = hidden.float().double() @ weight.float().double().T + bias.float().double()
    theirs = F.cross_entropy(logits, target, reduction="none")
    _same(ours, theirs)
    assert not theirs.isfinite().all()
    mean = crossent.linear_cross_entropy(hidden.float(), weight.float(), target, bias.float())
    assert mean.isnan() == F.cross_entropy(logits, target).isnan()
