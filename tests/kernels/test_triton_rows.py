"""The Triton row kernel, run by Triton's interpreter on the CPU (``TRITON_INTERPRET=1``).

CI has no GPU, so the kernel is checked where it can be: the same program, interpreted. The
oracle is PyTorch in float64 on materialised logits (the z-loss and soft-cap written with plain
PyTorch ops), as for the PyTorch path. Every test counts the kernel's launches, so that a
dispatcher that fell back to PyTorch could not pass for the kernel.
"""

from __future__ import annotations

import os
from typing import Any

import pytest
import torch
import torch.nn.functional as F

pytest.importorskip("triton", reason="Triton is an optional dependency (pip install triton)")

import crossent
import crossent.kernels.triton_rows
from crossent.kernels import use_triton
from oracles import composed_cross_entropy


class _CountedKernel:
    """The real kernel behind a counter: ``kernel[grid](...)`` counts one launch, then runs it."""

    def __init__(self, kernel: Any) -> None:
        self.kernel = kernel
        self.launches = 0

    def __getitem__(self, grid: tuple[int, ...]) -> Any:
        launch = self.kernel[grid]

        def counted(*args: Any, **kwargs: Any) -> Any:
            self.launches += 1
            return launch(*args, **kwargs)

        return counted


@pytest.fixture(autouse=True)
def kernel(monkeypatch: pytest.MonkeyPatch) -> _CountedKernel:
    """Route every eligible chunk through the kernel (interpreted: see conftest.py), counted."""
    monkeypatch.setenv("CROSSENT_KERNEL", "triton")
    counted = _CountedKernel(crossent.kernels.triton_rows._compiled_kernel())
    monkeypatch.setattr(crossent.kernels.triton_rows, "_compiled_kernel", lambda: counted)
    return counted


OPTIONS = [
    {},
    {"label_smoothing": 0.1},
    {"z_loss": 1e-3},
    {"softcap": 5.0},
    {"label_smoothing": 0.2, "z_loss": 1e-2, "softcap": 3.0},
]


def test_the_fixture_selects_the_kernel() -> None:
    assert os.environ["CROSSENT_KERNEL"] == "triton"
    assert use_triton(torch.zeros(1), weighted=False, soft=False)
    assert not use_triton(torch.zeros(1), weighted=True, soft=False)


def _cross_entropy_with_grad(logits: torch.Tensor, target: torch.Tensor, **options: Any) -> None:
    crossent.cross_entropy(logits.clone().requires_grad_(True), target, **options).backward()  # type: ignore[no-untyped-call]


def test_class_weights_and_probability_targets_never_launch_it(kernel: _CountedKernel) -> None:
    logits = torch.randn(4, 30)
    target = torch.tensor([0, 5, -100, 29])
    _cross_entropy_with_grad(logits, target, weight=torch.rand(30) + 0.5)
    _cross_entropy_with_grad(logits, torch.softmax(torch.randn(4, 30), -1))
    assert kernel.launches == 0
    _cross_entropy_with_grad(logits, target)
    assert kernel.launches == 2  # one chunk: forward, then backward


def test_the_torch_override_never_launches_it(
    kernel: _CountedKernel, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CROSSENT_KERNEL", "torch")
    _cross_entropy_with_grad(torch.randn(4, 30), torch.tensor([0, 5, -100, 29]))
    assert kernel.launches == 0


@pytest.mark.parametrize("vocab", [37, 2500])  # one block, and several with a ragged end
@pytest.mark.parametrize("reduction", ["none", "sum", "mean"])
@pytest.mark.parametrize("option", range(len(OPTIONS)))
def test_cross_entropy_through_the_kernel(
    kernel: _CountedKernel, vocab: int, reduction: str, option: int
) -> None:
    generator = torch.Generator().manual_seed(vocab)
    logits = torch.randn(6, vocab, generator=generator) * 3
    target = torch.randint(0, vocab, (6,), generator=generator)
    target[1] = -100
    upstream = torch.rand(6 if reduction == "none" else (), generator=generator) + 0.5
    options = {"reduction": reduction, **OPTIONS[option]}

    leaf = logits.clone().requires_grad_(True)
    loss = crossent.cross_entropy(leaf, target, **options)  # type: ignore[arg-type]
    (loss * upstream).sum().backward()  # type: ignore[no-untyped-call]
    truth_leaf = logits.double().requires_grad_(True)
    truth = composed_cross_entropy(truth_leaf, target, **options)  # type: ignore[arg-type]
    (truth * upstream.double()).sum().backward()  # type: ignore[no-untyped-call]

    torch.testing.assert_close(loss.double(), truth.detach(), rtol=1e-5, atol=1e-5)
    assert leaf.grad is not None
    torch.testing.assert_close(leaf.grad.double(), truth_leaf.grad, rtol=1e-5, atol=1e-6)
    assert kernel.launches == 2  # six rows are one chunk: one launch forward, one backward


@pytest.mark.parametrize("reduction", ["none", "mean"])
@pytest.mark.parametrize("option", [0, 4])
def test_linear_cross_entropy_through_the_kernel(
    kernel: _CountedKernel, reduction: str, option: int
) -> None:
    generator = torch.Generator().manual_seed(2)
    hidden = torch.randn(9, 16, generator=generator)
    weight = torch.randn(1100, 16, generator=generator) / 2
    target = torch.randint(0, 1100, (9,), generator=generator)
    target[::4] = -100
    options = {"reduction": reduction, **OPTIONS[option]}
    leaves = [t.clone().requires_grad_(True) for t in (hidden, weight)]
    loss = crossent.linear_cross_entropy(leaves[0], leaves[1], target, chunk_rows=4, **options)  # type: ignore[arg-type]
    loss.sum().backward()  # type: ignore[no-untyped-call]
    truth_leaves = [t.double().requires_grad_(True) for t in (hidden, weight)]
    truth = composed_cross_entropy(truth_leaves[0] @ truth_leaves[1].T, target, **options)  # type: ignore[arg-type]
    truth.sum().backward()  # type: ignore[no-untyped-call]
    torch.testing.assert_close(loss.double(), truth.detach(), rtol=1e-5, atol=1e-5)
    for leaf, truth_leaf in zip(leaves, truth_leaves, strict=True):
        assert leaf.grad is not None
        torch.testing.assert_close(leaf.grad.double(), truth_leaf.grad, rtol=1e-5, atol=1e-5)
    # Six scored tokens in chunks of four: two chunks, with the gradient in the same launches for
    # a mean, and launched again by the backward pass that recomputes them for "none".
    assert kernel.launches == (4 if reduction == "none" else 2)


def test_statistics_and_masked_vocabulary(kernel: _CountedKernel) -> None:
    logits = torch.tensor(
        [[1e4, -1e4, 0.0, 5e3], [float("-inf"), 2.0, float("-inf"), 1.0], [0.5, 0.5, 3.0, 0.5]]
    )
    target = torch.tensor([2, 3, 2])
    stats = crossent.cross_entropy_with_stats(logits, target, reduction="none")
    torch.testing.assert_close(
        stats.token_loss.double(), F.cross_entropy(logits.double(), target, reduction="none")
    )
    torch.testing.assert_close(stats.logsumexp, torch.logsumexp(logits, -1))
    assert stats.correct.tolist() == [False, False, True]
    assert kernel.launches == 1


def test_bfloat16_gradient_is_written_in_place_in_bfloat16(kernel: _CountedKernel) -> None:
    generator = torch.Generator().manual_seed(3)
    logits = (torch.randn(4, 1500, generator=generator) * 2).bfloat16().requires_grad_(True)
    target = torch.randint(0, 1500, (4,), generator=generator)
    crossent.cross_entropy(logits, target).backward()  # type: ignore[no-untyped-call]
    truth_leaf = logits.detach().double().requires_grad_(True)
    F.cross_entropy(truth_leaf, target).backward()  # type: ignore[no-untyped-call]
    assert logits.grad is not None
    assert logits.grad.dtype == torch.bfloat16
    torch.testing.assert_close(logits.grad.double(), truth_leaf.grad, rtol=1e-2, atol=1e-5)
    assert kernel.launches == 2


def test_strided_logits_get_their_gradient_through_the_kernel(kernel: _CountedKernel) -> None:
    """Rows without unit stride are worked on as a copy, and the gradient lands in place."""
    generator = torch.Generator().manual_seed(4)
    logits = (torch.randn(50, 5, generator=generator) * 2).T  # [5, 50], column stride 5
    target = torch.tensor([3, -100, 49, 0, 17])
    leaf = logits.detach().requires_grad_(True)
    crossent.cross_entropy(leaf, target, z_loss=1e-2).backward()  # type: ignore[no-untyped-call]
    truth_leaf = logits.detach().double().requires_grad_(True)
    composed_cross_entropy(truth_leaf, target, z_loss=1e-2).backward()  # type: ignore[no-untyped-call]
    assert leaf.grad is not None
    torch.testing.assert_close(leaf.grad.double(), truth_leaf.grad, rtol=1e-5, atol=1e-6)
    assert kernel.launches == 2
