"""The module wrappers: the functional losses' values, options checked when built."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from crossent.nn import CrossEntropyLoss, LinearCrossEntropyLoss


def test_cross_entropy_module_matches_torch_module() -> None:
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(6, 9, generator=generator, dtype=torch.float64)
    target = torch.randint(0, 9, (6,), generator=generator)
    target[2] = -100
    weight = torch.rand(9, generator=generator, dtype=torch.float64)
    ours = CrossEntropyLoss(weight, label_smoothing=0.1)(logits, target)
    theirs = torch.nn.CrossEntropyLoss(weight, label_smoothing=0.1)(logits, target)
    torch.testing.assert_close(ours, theirs, rtol=1e-12, atol=1e-12)


def test_class_weight_is_a_buffer_that_moves_with_the_module() -> None:
    criterion = CrossEntropyLoss(torch.ones(5))
    assert "weight" in criterion.state_dict()
    criterion = criterion.to(torch.float64)
    assert criterion.weight is not None
    assert criterion.weight.dtype == torch.float64


def test_linear_module_matches_unfused_torch() -> None:
    generator = torch.Generator().manual_seed(1)
    hidden = torch.randn(3, 4, 8, generator=generator, dtype=torch.float64)
    weight = torch.randn(31, 8, generator=generator, dtype=torch.float64)
    bias = torch.randn(31, generator=generator, dtype=torch.float64)
    target = torch.randint(0, 31, (3, 4), generator=generator)
    ours = LinearCrossEntropyLoss(reduction="sum", chunk_rows=5)(hidden, weight, target, bias)
    theirs = F.cross_entropy(
        F.linear(hidden, weight, bias).flatten(0, 1), target.flatten(), reduction="sum"
    )
    torch.testing.assert_close(ours, theirs, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize(
    ("build", "match"),
    [
        (lambda: CrossEntropyLoss(reduction="avg"), "unknown reduction 'avg'"),  # type: ignore[arg-type]
        (lambda: CrossEntropyLoss(label_smoothing=2.0), r"label_smoothing must be in \[0.0, 1.0\]"),
        (lambda: CrossEntropyLoss(torch.ones(2, 3)), r"one entry per class \(1-D\)"),
        (lambda: LinearCrossEntropyLoss(z_loss=-1.0), "z_loss must be non-negative"),
        (lambda: LinearCrossEntropyLoss(softcap=0.0), "softcap must be positive"),
        (lambda: LinearCrossEntropyLoss(chunk_rows=0), "chunk_rows must be positive"),
    ],
)
def test_bad_options_fail_when_built(build: object, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        build()  # type: ignore[operator]
