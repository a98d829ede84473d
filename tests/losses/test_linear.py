"""crossent.linear_cross_entropy against the unfused loss on materialised logits.

The oracle is PyTorch: ``F.cross_entropy(hidden @ weight.T + bias, target)`` in float64 (plus the
z-loss and soft-cap formulas written with plain PyTorch ops), for the loss and the gradients of
hidden, weight and bias; PyTorch at the tested dtype sets the tolerance (``oracles.py``).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor

import crossent
from crossent.losses.linear import linear_cross_entropy, linear_cross_entropy_with_stats
from oracles import assert_no_worse_than_torch, composed_cross_entropy

REDUCTIONS = ["none", "sum", "mean"]


def _unfused(
    hidden: Tensor,
    weight: Tensor,
    target: Tensor,
    bias: Tensor | None = None,
    **options: object,
) -> Tensor:
    """The loss on materialised logits, written with PyTorch's own ops only."""
    return composed_cross_entropy(F.linear(hidden, weight, bias), target, **options)  # type: ignore[arg-type]


def _case(
    tokens: tuple[int, ...], dim: int, vocab: int, ignored: str, bias: bool, seed: int
) -> tuple[Tensor, Tensor, Tensor, Tensor | None]:
    generator = torch.Generator().manual_seed(seed)
    hidden = torch.randn(*tokens, dim, generator=generator, dtype=torch.float64)
    weight = torch.randn(vocab, dim, generator=generator, dtype=torch.float64) / dim**0.5 * 3
    target = torch.randint(0, vocab, tokens, generator=generator)
    if ignored == "some":
        target.view(-1)[1::3] = -100
    elif ignored == "all":
        target.fill_(-100)
    bias_tensor = torch.randn(vocab, generator=generator, dtype=torch.float64) if bias else None
    return hidden, weight, target, bias_tensor


def _loss_and_grads(
    fn: Callable[..., Tensor],
    hidden: Tensor,
    weight: Tensor,
    target: Tensor,
    bias: Tensor | None,
    upstream: Tensor,
    **options: object,
) -> list[Tensor]:
    leaves = [t.detach().clone().requires_grad_(True) for t in (hidden, weight)]
    bias_leaf = bias.detach().clone().requires_grad_(True) if bias is not None else None
    loss = fn(leaves[0], leaves[1], target, bias_leaf, **options)
    (loss * upstream).sum().backward()  # type: ignore[no-untyped-call]
    grads = [leaf.grad for leaf in leaves] + ([bias_leaf.grad] if bias_leaf is not None else [])
    assert all(grad is not None for grad in grads)
    return [loss.detach(), *grads]  # type: ignore[list-item]


OPTIONS = [
    {},
    {"label_smoothing": 0.1},
    {"z_loss": 1e-3},
    {"softcap": 4.0},
    {"label_smoothing": 0.2, "z_loss": 1e-2, "softcap": 3.0},
]
GRID = list(
    itertools.product(
        [(5,), (2, 7), (1,)],  # token shapes: N not a multiple of the chunk, N = 1
        [13, 97],  # vocabulary sizes, both prime
        ["none", "some", "all"],
        [False, True],
        REDUCTIONS,
        range(len(OPTIONS)),
    )
)


@pytest.mark.parametrize("chunk_rows", [2, None], ids=["chunk2", "auto"])
@pytest.mark.parametrize(("tokens", "vocab", "ignored", "bias", "reduction", "option"), GRID)
def test_matches_unfused_in_float64(
    tokens: tuple[int, ...],
    vocab: int,
    ignored: str,
    bias: bool,
    reduction: str,
    option: int,
    chunk_rows: int | None,
) -> None:
    hidden, weight, target, bias_tensor = _case(tokens, 8, vocab, ignored, bias, seed=vocab)
    upstream = torch.rand(tokens if reduction == "none" else (), dtype=torch.float64) + 0.5
    options = {"reduction": reduction, **OPTIONS[option]}
    ours = _loss_and_grads(
        linear_cross_entropy,
        hidden,
        weight,
        target,
        bias_tensor,
        upstream,
        chunk_rows=chunk_rows,
        **options,
    )
    expected = _loss_and_grads(_unfused, hidden, weight, target, bias_tensor, upstream, **options)
    names = ["loss", "hidden", "weight", "bias"][: len(expected)]
    for name, got, want in zip(names, ours, expected, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12, msg=name)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16], ids=str)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("option", range(len(OPTIONS)))
def test_low_precision_no_worse_than_torch(dtype: torch.dtype, reduction: str, option: int) -> None:
    """Inputs rounded to the dtype; truth is float64 on those very inputs."""
    hidden64, weight64, target, bias64 = _case((3, 11), 32, 257, "some", True, seed=1)
    hidden, weight, bias = hidden64.to(dtype), weight64.to(dtype), bias64.to(dtype)  # type: ignore[union-attr]
    upstream = torch.rand(target.shape if reduction == "none" else (), dtype=torch.float64) + 0.5
    options = {"reduction": reduction, **OPTIONS[option]}
    ours = _loss_and_grads(
        linear_cross_entropy,
        hidden,
        weight,
        target,
        bias,
        upstream.to(dtype),
        chunk_rows=4,
        **options,
    )
    truth = _loss_and_grads(
        _unfused, hidden.double(), weight.double(), target, bias.double(), upstream, **options
    )
    theirs = _loss_and_grads(_unfused, hidden, weight, target, bias, upstream.to(dtype), **options)
    for name, got, want, torch_value in zip(
        ["loss", "hidden", "weight", "bias"], ours, truth, theirs, strict=True
    ):
        # The loss of bf16/fp16 inputs comes back in fp32 (crossent.losses.linear.loss_dtype).
        assert got.dtype == (torch.float32 if name == "loss" else dtype), name
        assert_no_worse_than_torch(got, torch_value, want, dtype, name)


def test_confident_predictions_have_finite_tiny_gradients() -> None:
    """The target's logit dominates (p -> 1): the loss is ~0 and >= 0, the gradients finite."""
    dim, vocab = 16, 1000
    weight = torch.eye(vocab, dim) * 100.0
    hidden = torch.zeros(4, dim)
    hidden[torch.arange(4), torch.arange(4)] = 1.0  # logit 100 for class i, 0 elsewhere
    hidden.requires_grad_(True)
    leaf_weight = weight.clone().requires_grad_(True)
    loss = linear_cross_entropy(hidden, leaf_weight, torch.arange(4), reduction="none")
    loss.sum().backward()  # type: ignore[no-untyped-call]
    assert (loss >= 0).all()
    assert loss.max().item() < 1e-30  # truly log1p(999 * e^-100) = 3.7e-41
    assert hidden.grad is not None
    assert leaf_weight.grad is not None
    assert torch.isfinite(hidden.grad).all()
    assert torch.isfinite(leaf_weight.grad).all()


def test_stats_match_unfused_statistics() -> None:
    hidden, weight, target, bias = _case((4, 6), 8, 31, "some", True, seed=3)
    stats = linear_cross_entropy_with_stats(hidden, weight, target, bias, z_loss=1e-3, chunk_rows=3)
    logits = F.linear(hidden, weight, bias)
    scored = target != -100
    torch.testing.assert_close(
        stats.token_loss, _unfused(hidden, weight, target, bias, reduction="none", z_loss=1e-3)
    )
    torch.testing.assert_close(stats.logsumexp[scored], torch.logsumexp(logits, -1)[scored])
    assert torch.equal(stats.correct, (logits.argmax(-1) == target) & scored)
    assert torch.equal(stats.scored, scored)


def test_evaluation_without_grad_matches() -> None:
    hidden, weight, target, _ = _case((64,), 16, 50, "some", False, seed=4)
    with torch.no_grad():
        ours = linear_cross_entropy(hidden, weight, target, chunk_rows=7)
    torch.testing.assert_close(ours, _unfused(hidden, weight, target), rtol=1e-12, atol=1e-12)


def test_torch_compile_of_a_model_that_calls_it() -> None:
    """A compiled model with the fused loss on its (tied) head: the eager loss and gradients."""

    class TinyLM(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.embed = torch.nn.Embedding(37, 12)
            self.mix = torch.nn.Linear(12, 12)

        def forward(self, tokens: Tensor, target: Tensor) -> Tensor:
            hidden = torch.tanh(self.mix(self.embed(tokens)))  # (B, T, d)
            return crossent.linear_cross_entropy(hidden, self.embed.weight, target)

    torch.manual_seed(0)
    model = TinyLM()
    tokens = torch.randint(0, 37, (2, 9))
    target = torch.randint(0, 37, (2, 9))
    eager = model(tokens, target)
    eager.backward()
    eager_grads = [p.grad.clone() for p in model.parameters() if p.grad is not None]
    model.zero_grad()
    compiled = torch.compile(model)(tokens, target)
    compiled.backward()
    torch.testing.assert_close(compiled, eager)
    compiled_grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert len(compiled_grads) == len(eager_grads) == 3
    for got, want in zip(compiled_grads, eager_grads, strict=True):
        torch.testing.assert_close(got, want)
    torch.testing.assert_close(
        eager, _unfused(torch.tanh(model.mix(model.embed(tokens))), model.embed.weight, target)
    )


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        (
            {"weight": torch.randn(11, 5)},
            ValueError,
            r"weight must be \[V, d\], .* with d = .*\(8\)",
        ),
        ({"target": torch.full((3,), 11)}, ValueError, r"target 11 is outside the vocabulary"),
        ({"target": torch.zeros(4, dtype=torch.long)}, ValueError, r"\(3, 8\) needs target \(3,\)"),
        ({"bias": torch.randn(10)}, ValueError, r"bias must have one entry per row of weight"),
        ({"hidden": torch.ones(3, 8, dtype=torch.long)}, TypeError, "floating-point"),
        ({"weight": torch.randn(11, 8, dtype=torch.float64)}, TypeError, "same dtype"),
        ({"reduction": "avg"}, ValueError, "unknown reduction 'avg'"),
        ({"chunk_rows": 0}, ValueError, "chunk_rows must be positive"),
    ],
)
def test_bad_input_is_named(kwargs: dict[str, object], error: type[Exception], match: str) -> None:
    arguments: dict[str, object] = {
        "hidden": torch.randn(3, 8),
        "weight": torch.randn(11, 8),
        "target": torch.tensor([0, 1, 2]),
    }
    arguments.update(kwargs)
    with pytest.raises(error, match=match):
        linear_cross_entropy(**arguments)  # type: ignore[arg-type]


@pytest.mark.parametrize("frozen", ["hidden", "weight"])
def test_a_frozen_input_gets_no_gradient_and_the_other_the_right_one(frozen: str) -> None:
    hidden, weight, target, bias = _case((7,), 8, 29, "some", True, seed=6)
    leaves = {
        "hidden": hidden.clone().requires_grad_(frozen != "hidden"),
        "weight": weight.clone().requires_grad_(frozen != "weight"),
    }
    linear_cross_entropy(leaves["hidden"], leaves["weight"], target, bias, chunk_rows=3).backward()  # type: ignore[no-untyped-call]
    truth = [t.clone().requires_grad_(True) for t in (hidden, weight)]
    _unfused(truth[0], truth[1], target, bias).backward()  # type: ignore[no-untyped-call]
    assert leaves[frozen].grad is None
    trained = "weight" if frozen == "hidden" else "hidden"
    expected = truth[1].grad if trained == "weight" else truth[0].grad
    torch.testing.assert_close(leaves[trained].grad, expected, rtol=1e-12, atol=1e-12)


def test_on_chunk_sees_every_scored_rows_logits_and_changes_nothing() -> None:
    torch.manual_seed(0)
    hidden = torch.randn(2, 7, 8, requires_grad=True)
    weight = torch.randn(11, 8)
    target = torch.randint(0, 11, (2, 7))
    target[0, 3] = -100
    seen: list[tuple[torch.Tensor, torch.Tensor]] = []
    stats = linear_cross_entropy_with_stats(
        hidden, weight, target, chunk_rows=4,
        on_chunk=lambda logits, rows, terms: seen.append((logits.clone(), rows.clone())),
    )  # fmt: skip
    scored = target.flatten() != -100
    logits = torch.cat([chunk for chunk, _ in seen])
    expected = (hidden.detach() @ weight.T).flatten(0, 1)[scored]
    torch.testing.assert_close(logits, expected)
    assert torch.equal(torch.cat([rows for _, rows in seen]), target.flatten()[scored])
    plain = torch.nn.functional.cross_entropy((hidden @ weight.T).flatten(0, 1), target.flatten())
    torch.testing.assert_close(stats.loss, plain)
    (grad,) = torch.autograd.grad(stats.loss, hidden)
    (expected_grad,) = torch.autograd.grad(plain, hidden)
    torch.testing.assert_close(grad, expected_grad)
    assert len(seen) == 4  # 13 scored rows, 4 a chunk; backward recomputes without calling it
