"""The Triton row kernel, run by Triton's interpreter on the CPU (``TRITON_INTERPRET=1``).

CI has no GPU, so the kernel is checked where it can be: the same program, interpreted. The
oracle is PyTorch in float64 on materialised logits (the z-loss and soft-cap written with plain
PyTorch ops), as for the PyTorch path.
"""

from __future__ import annotations

import os

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor

pytest.importorskip("triton", reason="Triton is an optional dependency (pip install triton)")

import crossent
from crossent.kernels.rows import use_triton


@pytest.fixture(autouse=True)
def through_the_kernel(monkeypatch: pytest.MonkeyPatch) -> None:
    """Route every eligible chunk through the kernel (interpreted: see conftest.py)."""
    monkeypatch.setenv("CROSSENT_KERNEL", "triton")


def _composed(
    logits: Tensor,
    target: Tensor,
    *,
    reduction: str = "mean",
    label_smoothing: float = 0.0,
    z_loss: float = 0.0,
    softcap: float | None = None,
) -> Tensor:
    z = softcap * torch.tanh(logits / softcap) if softcap is not None else logits
    scored = target != -100
    token = F.cross_entropy(z, target, reduction="none", label_smoothing=label_smoothing)
    token = token + torch.where(scored, z_loss * torch.logsumexp(z, -1) ** 2, 0.0)
    if reduction == "none":
        return token
    return token.sum() / (scored.sum().clamp(min=1) if reduction == "mean" else 1)


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


@pytest.mark.parametrize("vocab", [37, 2500])  # one block, and several with a ragged end
@pytest.mark.parametrize("reduction", ["none", "sum", "mean"])
@pytest.mark.parametrize("option", range(len(OPTIONS)))
def test_cross_entropy_through_the_kernel(vocab: int, reduction: str, option: int) -> None:
    generator = torch.Generator().manual_seed(vocab)
    logits = torch.randn(6, vocab, generator=generator) * 3
    target = torch.randint(0, vocab, (6,), generator=generator)
    target[1] = -100
    upstream = torch.rand(6 if reduction == "none" else (), generator=generator) + 0.5
    options = {"reduction": reduction, **OPTIONS[option]}

    leaf = logits.clone().requires_grad_(True)
    loss = crossent.cross_entropy(leaf, target, **options)  # type: ignore[arg-type]
    (loss * upstream).sum().backward()
    truth_leaf = logits.double().requires_grad_(True)
    truth = _composed(truth_leaf, target, **options)  # type: ignore[arg-type]
    (truth * upstream.double()).sum().backward()

    torch.testing.assert_close(loss.double(), truth.detach(), rtol=1e-5, atol=1e-5)
    assert leaf.grad is not None
    torch.testing.assert_close(leaf.grad.double(), truth_leaf.grad, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("reduction", ["none", "mean"])
@pytest.mark.parametrize("option", [0, 4])
def test_linear_cross_entropy_through_the_kernel(reduction: str, option: int) -> None:
    generator = torch.Generator().manual_seed(2)
    hidden = torch.randn(9, 16, generator=generator)
    weight = torch.randn(1100, 16, generator=generator) / 2
    target = torch.randint(0, 1100, (9,), generator=generator)
    target[::4] = -100
    options = {"reduction": reduction, **OPTIONS[option]}
    leaves = [t.clone().requires_grad_(True) for t in (hidden, weight)]
    loss = crossent.linear_cross_entropy(*leaves, target, chunk_rows=4, **options)  # type: ignore[arg-type]
    loss.sum().backward()
    truth_leaves = [t.double().requires_grad_(True) for t in (hidden, weight)]
    truth = _composed(truth_leaves[0] @ truth_leaves[1].T, target, **options)  # type: ignore[arg-type]
    truth.sum().backward()
    torch.testing.assert_close(loss.double(), truth.detach(), rtol=1e-5, atol=1e-5)
    for leaf, truth_leaf in zip(leaves, truth_leaves, strict=True):
        assert leaf.grad is not None
        torch.testing.assert_close(leaf.grad.double(), truth_leaf.grad, rtol=1e-5, atol=1e-5)


def test_statistics_and_masked_vocabulary() -> None:
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


def test_bfloat16_gradient_is_written_in_place_in_bfloat16() -> None:
    generator = torch.Generator().manual_seed(3)
    logits = (torch.randn(4, 1500, generator=generator) * 2).bfloat16().requires_grad_(True)
    target = torch.randint(0, 1500, (4,), generator=generator)
    crossent.cross_entropy(logits, target).backward()
    truth_leaf = logits.detach().double().requires_grad_(True)
    F.cross_entropy(truth_leaf, target).backward()
    assert logits.grad is not None
    assert logits.grad.dtype == torch.bfloat16
    torch.testing.assert_close(logits.grad.double(), truth_leaf.grad, rtol=1e-2, atol=1e-5)
