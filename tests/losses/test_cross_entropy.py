"""crossent.cross_entropy against PyTorch, in value and gradient, across every option and dtype.

The ground truth is ``torch.nn.functional.cross_entropy`` in float64 on the same (dtype-rounded)
inputs; PyTorch at the tested dtype sets the tolerance (see ``oracles.py``).
"""

from __future__ import annotations

import itertools
import math

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.testing._internal.common_nn import cross_entropy_loss_reference

import crossent
import crossent.kernels.chunks
from crossent import cross_entropy, cross_entropy_with_stats
from oracles import assert_no_worse_than_torch, composed_cross_entropy, loss_and_grad

DTYPES = [torch.float64, torch.float32, torch.float16, torch.bfloat16]
SHAPES = [(5, 7), (2, 3, 11), (1, 13), (3, 1, 2, 17)]
REDUCTIONS = ["none", "sum", "mean"]


@pytest.fixture(params=[None, 16], ids=["one-chunk", "many-chunks"])
def chunking(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """Run a test once as is and once with chunks of ~16 logits (rows not a multiple of it)."""
    if request.param is not None:
        monkeypatch.setattr(crossent.kernels.chunks, "LOGITS_PER_CHUNK", request.param)


def _torch_cross_entropy(logits: Tensor, target: Tensor, **options: object) -> Tensor:
    """PyTorch's loss with our class-last layout: PyTorch wants classes at dim 1 beyond 2-D."""
    if logits.ndim > 2:
        logits = logits.movedim(-1, 1)
        if torch.is_floating_point(target):
            target = target.movedim(-1, 1)
    return F.cross_entropy(logits, target, **options)  # type: ignore[arg-type]


def _make_case(
    shape: tuple[int, ...], ignore: str, soft: bool, seed: int
) -> tuple[Tensor, Tensor, Tensor]:
    generator = torch.Generator().manual_seed(seed)
    num_classes = shape[-1]
    logits = torch.randn(shape, generator=generator, dtype=torch.float64) * 4
    weight = torch.rand(num_classes, generator=generator, dtype=torch.float64) + 0.1
    if soft:
        target = torch.softmax(torch.randn(shape, generator=generator, dtype=torch.float64), -1)
        return logits, target, weight
    target = torch.randint(0, num_classes, shape[:-1], generator=generator)
    if ignore == "some":
        target.view(-1)[::3] = -100
    elif ignore == "all":
        target.fill_(-100)
    return logits, target, weight


CLASS_GRID = list(
    itertools.product(SHAPES, ["none", "some", "all"], [0.0, 0.1], [False, True], REDUCTIONS)
)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize(("shape", "ignore", "smoothing", "weighted", "reduction"), CLASS_GRID)
def test_class_targets_match_torch(
    dtype: torch.dtype,
    shape: tuple[int, ...],
    ignore: str,
    smoothing: float,
    weighted: bool,
    reduction: str,
) -> None:
    logits64, target, weight64 = _make_case(shape, ignore, soft=False, seed=sum(shape))
    logits = logits64.to(dtype)
    weight = weight64.to(dtype) if weighted else None
    options = {"weight": weight, "label_smoothing": smoothing, "reduction": reduction}
    upstream = torch.rand(shape[:-1] if reduction == "none" else (), dtype=torch.float64) + 0.5

    ours, ours_grad = loss_and_grad(cross_entropy, logits, target, upstream.to(dtype), **options)
    assert ours.dtype == dtype
    nothing_scored = ignore == "all" and reduction == "mean"
    if nothing_scored:
        # The documented policy: a mean over no token is 0 with zero gradients (PyTorch: NaN).
        assert ours.item() == 0.0
        assert torch.count_nonzero(ours_grad) == 0
        return
    truth64_options = {**options, "weight": weight.double() if weight is not None else None}
    truth, truth_grad = loss_and_grad(
        _torch_cross_entropy, logits.double(), target, upstream, **truth64_options
    )
    theirs, theirs_grad = loss_and_grad(
        _torch_cross_entropy, logits, target, upstream.to(dtype), **options
    )
    assert_no_worse_than_torch(ours, theirs, truth, dtype, "loss")
    assert_no_worse_than_torch(ours_grad, theirs_grad, truth_grad, dtype, "gradient")


SOFT_GRID = list(itertools.product(SHAPES, [0.0, 0.2], [False, True], REDUCTIONS))


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize(("shape", "smoothing", "weighted", "reduction"), SOFT_GRID)
def test_probability_targets_match_torch(
    dtype: torch.dtype, shape: tuple[int, ...], smoothing: float, weighted: bool, reduction: str
) -> None:
    logits64, target64, weight64 = _make_case(shape, "none", soft=True, seed=7 * sum(shape))
    logits, target = logits64.to(dtype), target64.to(dtype)
    weight = weight64.to(dtype) if weighted else None
    options = {"weight": weight, "label_smoothing": smoothing, "reduction": reduction}
    upstream = torch.rand(shape[:-1] if reduction == "none" else (), dtype=torch.float64) + 0.5

    ours, ours_grad = loss_and_grad(cross_entropy, logits, target, upstream.to(dtype), **options)
    truth64_options = {**options, "weight": weight.double() if weight is not None else None}
    truth, truth_grad = loss_and_grad(
        _torch_cross_entropy, logits.double(), target.double(), upstream, **truth64_options
    )
    theirs, theirs_grad = loss_and_grad(
        _torch_cross_entropy, logits, target, upstream.to(dtype), **options
    )
    assert_no_worse_than_torch(ours, theirs, truth, dtype, "loss")
    assert_no_worse_than_torch(ours_grad, theirs_grad, truth_grad, dtype, "gradient")


@pytest.mark.usefixtures("chunking")
@pytest.mark.parametrize(
    ("soft", "smoothing", "weighted", "reduction"),
    list(itertools.product([False, True], [0.0, 0.3], [False, True], REDUCTIONS)),
)
def test_matches_pytorch_pure_python_reference(
    soft: bool, smoothing: float, weighted: bool, reduction: str
) -> None:
    """A second oracle: the loop-based reference in PyTorch's own test suite (float64, 2-D)."""
    logits, target, weight = _make_case((9, 6), "some", soft=soft, seed=3)
    w = weight if weighted else None
    ours = cross_entropy(logits, target, w, -100, reduction, smoothing)  # type: ignore[arg-type]
    expected = cross_entropy_loss_reference(  # type: ignore[no-untyped-call]
        logits, target, w, ignore_index=-100, reduction=reduction, label_smoothing=smoothing
    )
    torch.testing.assert_close(ours, expected, rtol=1e-12, atol=1e-12)


@pytest.mark.usefixtures("chunking")
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.bfloat16], ids=str)
@pytest.mark.parametrize("softcap", [None, 3.0])
@pytest.mark.parametrize("z_loss", [0.0, 1e-2])
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_z_loss_and_softcap_match_composed_torch(
    dtype: torch.dtype, softcap: float | None, z_loss: float, reduction: str
) -> None:
    """The two LLM options against the same formula written with plain PyTorch ops in float64."""
    logits64, target, _weight64 = _make_case((4, 5, 23), "some", soft=False, seed=11)

    def composed(logits: Tensor, target: Tensor, reduction: str = "mean") -> Tensor:
        return composed_cross_entropy(
            logits, target, reduction=reduction, z_loss=z_loss, softcap=softcap
        )

    upstream = torch.rand(target.shape if reduction == "none" else (), dtype=torch.float64) + 0.5
    options = {"reduction": reduction}
    ours, ours_grad = loss_and_grad(
        cross_entropy,
        logits64.to(dtype),
        target,
        upstream.to(dtype),
        z_loss=z_loss,
        softcap=softcap,
        **options,
    )
    truth, truth_grad = loss_and_grad(
        composed, logits64.to(dtype).double(), target, upstream, **options
    )
    theirs, theirs_grad = loss_and_grad(
        composed, logits64.to(dtype), target, upstream.to(dtype), **options
    )
    assert_no_worse_than_torch(ours, theirs, truth, dtype, "loss")
    assert_no_worse_than_torch(ours_grad, theirs_grad, truth_grad, dtype, "gradient")


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16], ids=str)
def test_extreme_logits_are_exact(dtype: torch.dtype) -> None:
    """|logit| up to 1e4 and masked (-inf) vocabulary entries: the log-space loss stays exact."""
    logits64 = torch.tensor(
        [
            [1e4, -1e4, 0.0, 5e3],
            [-1e4, -1e4, -1e4, -1e4 + 1],
            [float("-inf"), 2.0, float("-inf"), 1.0],
            [float("-inf"), float("-inf"), float("-inf"), 0.0],
        ],
        dtype=torch.float64,
    )
    if dtype == torch.float16:  # 1e4 is within fp16's range (65504) but 5e3 + 1e4 spacing is 8
        logits64 = logits64.clamp(min=-6e4, max=6e4)
    target = torch.tensor([2, 3, 3, 3])
    logits = logits64.to(dtype)
    ours, ours_grad = loss_and_grad(
        cross_entropy, logits, target, torch.tensor(1.0, dtype=dtype), reduction="none"
    )
    truth, truth_grad = loss_and_grad(
        F.cross_entropy,
        logits.double(),
        target,
        torch.tensor(1.0, dtype=torch.float64),
        reduction="none",
    )
    assert torch.isfinite(ours).all()
    assert torch.isfinite(ours_grad).all()
    eps = torch.finfo(dtype).eps
    torch.testing.assert_close(ours.double(), truth, rtol=eps, atol=0.0)
    torch.testing.assert_close(ours_grad.double(), truth_grad, rtol=0.0, atol=eps)


def test_confident_prediction_has_tiny_loss_and_gradient() -> None:
    """p(target) -> 1: the loss is ~0 but never negative, and the gradient is ~0, not NaN."""
    num_classes = 50257
    logits = torch.zeros(3, num_classes)
    target = torch.tensor([5, 6, 7])
    logits[0, 5], logits[1, 6], logits[2, 7] = 40.0, 1e4, 25.0
    leaf = logits.clone().requires_grad_(True)
    loss = cross_entropy(leaf, target, reduction="none")
    loss.sum().backward()  # type: ignore[no-untyped-call]
    assert leaf.grad is not None
    expected = torch.log1p((num_classes - 1) * torch.exp(-logits.double()[[0, 1, 2], [5, 6, 7]]))
    assert (loss >= 0).all()
    torch.testing.assert_close(loss.double(), expected, rtol=0.0, atol=1e-6)
    assert torch.isfinite(leaf.grad).all()
    assert leaf.grad.abs().max().item() < 1e-6


def test_stats_report_what_the_loss_saw() -> None:
    logits64, target, _ = _make_case((3, 4, 9), "some", soft=False, seed=5)
    stats = cross_entropy_with_stats(logits64.float(), target, z_loss=1e-3)
    scored = target != -100
    token = composed_cross_entropy(logits64, target, reduction="none", z_loss=1e-3)
    torch.testing.assert_close(stats.token_loss.double(), token, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(
        stats.logsumexp.double(), torch.logsumexp(logits64, -1), rtol=1e-6, atol=1e-6
    )
    assert torch.equal(stats.scored, scored)
    assert torch.equal(stats.correct, (logits64.argmax(-1) == target) & scored)
    assert stats.count == int(scored.sum())
    assert stats.accuracy == pytest.approx(
        float(((logits64.argmax(-1) == target) & scored).sum()) / int(scored.sum())
    )
    torch.testing.assert_close(stats.loss, cross_entropy(logits64.float(), target, z_loss=1e-3))


def test_token_loss_equals_reduction_none_and_sum() -> None:
    logits64, target, weight = _make_case((6, 10), "some", soft=False, seed=9)
    options = {"weight": weight, "label_smoothing": 0.1}
    stats = cross_entropy_with_stats(logits64, target, **options)  # type: ignore[arg-type]
    none = cross_entropy(logits64, target, reduction="none", **options)  # type: ignore[arg-type]
    total = cross_entropy(logits64, target, reduction="sum", **options)  # type: ignore[arg-type]
    torch.testing.assert_close(stats.token_loss, none)
    assert math.isclose(float(none.sum()), float(total), rel_tol=1e-12)


def test_empty_batch_mean_is_zero() -> None:
    logits = torch.zeros(0, 5, requires_grad=True)
    loss = cross_entropy(logits, torch.zeros(0, dtype=torch.long))
    loss.backward()  # type: ignore[no-untyped-call]
    assert loss.item() == 0.0
    assert logits.grad is not None
    assert logits.grad.shape == (0, 5)


def test_a_weight_is_not_required_to_have_a_gradient() -> None:
    """Class weights are constants, as in PyTorch: a weight with requires_grad gets none."""
    logits = torch.randn(4, 5, requires_grad=True)
    weight = torch.rand(5, requires_grad=True)
    cross_entropy(logits, torch.tensor([0, 1, 2, 3]), weight).backward()  # type: ignore[no-untyped-call]
    assert weight.grad is None
    assert logits.grad is not None


def test_probability_target_gradient_matches_torch() -> None:
    """Soft targets may themselves require grad (e.g. a learned target distribution)."""
    logits64, target64, weight = _make_case((5, 8), "none", soft=True, seed=13)
    grads = []
    for fn in (cross_entropy, F.cross_entropy):
        target = target64.clone().requires_grad_(True)
        fn(logits64, target, weight, label_smoothing=0.2).backward()  # type: ignore[no-untyped-call]
        grads.append(target.grad)
    torch.testing.assert_close(grads[0], grads[1], rtol=1e-12, atol=1e-12)


def test_public_names_are_exported() -> None:
    assert crossent.cross_entropy is cross_entropy
    assert crossent.cross_entropy_with_stats is cross_entropy_with_stats
