"""crossent.kl_divergence and distillation_loss against PyTorch, in value and both gradients.

The ground truth is ``F.kl_div(F.log_softmax(s / T), F.log_softmax(t / T), log_target=True)`` (and
``F.cross_entropy`` for the hard term) in float64 on the same (dtype-rounded) inputs; PyTorch at
the tested dtype sets the tolerance (see ``oracles.py``). ``F.kl_div`` differentiates its target
too, so the teacher's gradient has an oracle as well as the student's.
"""

from __future__ import annotations

import itertools

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor

from crossent import distillation_loss, kl_divergence
from oracles import assert_no_worse_than_torch

DTYPES = [torch.float64, torch.float32, torch.bfloat16]
SHAPES = [(5, 7), (2, 3, 11)]
REDUCTIONS = ["none", "sum", "mean"]
TEMPERATURES = [0.5, 1.0, 2.5]


def _torch_kl(student: Tensor, teacher: Tensor, temperature: float, reduction: str) -> Tensor:
    """``F.kl_div`` with our reductions: per token for "none", batchmean over every token for
    "mean", and its own batchmean (the sum over the size of the first dimension) for "batchmean"."""
    num_classes = student.shape[-1]
    log_student = F.log_softmax(student / temperature, dim=-1)
    log_teacher = F.log_softmax(teacher / temperature, dim=-1)
    if reduction == "batchmean":
        return F.kl_div(log_student, log_teacher, log_target=True, reduction="batchmean")
    if reduction == "none":
        return F.kl_div(log_student, log_teacher, log_target=True, reduction="none").sum(-1)
    if reduction == "sum":
        return F.kl_div(log_student, log_teacher, log_target=True, reduction="sum")
    return F.kl_div(
        log_student.reshape(-1, num_classes),
        log_teacher.reshape(-1, num_classes),
        log_target=True,
        reduction="batchmean",
    )


def _torch_distillation(
    student: Tensor,
    teacher: Tensor,
    target: Tensor,
    temperature: float,
    alpha: float,
    ignore_index: int,
) -> Tensor:
    num_classes = student.shape[-1]
    student, teacher, target = (
        student.reshape(-1, num_classes),
        teacher.reshape(-1, num_classes),
        target.reshape(-1),
    )
    scored = target != ignore_index
    soft = F.kl_div(
        F.log_softmax(student[scored] / temperature, dim=-1),
        F.log_softmax(teacher[scored] / temperature, dim=-1),
        log_target=True,
        reduction="batchmean",
    )
    hard = F.cross_entropy(student, target, ignore_index=ignore_index)
    return alpha * temperature**2 * soft + (1 - alpha) * hard


def _loss_and_grads(
    fn: object, student: Tensor, teacher: Tensor, upstream: Tensor, *args: object, **kwargs: object
) -> tuple[Tensor, Tensor, Tensor]:
    """The loss and its gradients into the student and the teacher logits."""
    student = student.detach().clone().requires_grad_(True)
    teacher = teacher.detach().clone().requires_grad_(True)
    loss = fn(student, teacher, *args, **kwargs)  # type: ignore[operator]
    student_grad, teacher_grad = torch.autograd.grad((loss * upstream).sum(), [student, teacher])
    return loss.detach(), student_grad, teacher_grad


def _logits(shape: tuple[int, ...], seed: int) -> tuple[Tensor, Tensor]:
    generator = torch.Generator().manual_seed(seed)
    student = torch.randn(shape, generator=generator, dtype=torch.float64) * 3
    teacher = torch.randn(shape, generator=generator, dtype=torch.float64) * 3
    return student, teacher


def _assert_parity(
    ours: tuple[Tensor, ...],
    theirs: tuple[Tensor, ...],
    truth: tuple[Tensor, ...],
    dtype: torch.dtype,
) -> None:
    for what, mine, their, true in zip(
        ["loss", "student gradient", "teacher gradient"], ours, theirs, truth, strict=True
    ):
        assert_no_worse_than_torch(mine, their, true, dtype, what)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize(
    ("shape", "temperature", "reduction"), list(itertools.product(SHAPES, TEMPERATURES, REDUCTIONS))
)
def test_kl_divergence_matches_torch(
    dtype: torch.dtype, shape: tuple[int, ...], temperature: float, reduction: str
) -> None:
    student64, teacher64 = _logits(shape, seed=sum(shape))
    student, teacher = student64.to(dtype), teacher64.to(dtype)
    upstream = torch.rand(shape[:-1] if reduction == "none" else (), dtype=torch.float64) + 0.5

    ours = _loss_and_grads(
        kl_divergence, student, teacher, upstream.to(dtype), temperature, reduction
    )
    assert ours[0].dtype == dtype
    assert ours[0].shape == (shape[:-1] if reduction == "none" else ())
    truth = _loss_and_grads(
        _torch_kl, student.double(), teacher.double(), upstream, temperature, reduction
    )
    theirs = _loss_and_grads(
        _torch_kl, student, teacher, upstream.to(dtype), temperature, reduction
    )
    _assert_parity(ours, theirs, truth, dtype)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=str)
def test_half_precision_is_computed_in_fp32(dtype: torch.dtype) -> None:
    """Documented: fp16/bf16 logits are computed in fp32, so only the final rounding is lost."""
    student, teacher = (logits.to(dtype) for logits in _logits((6, 13), seed=17))
    ours = kl_divergence(student, teacher, 1.5, "none")
    truth = _torch_kl(student.double(), teacher.double(), 1.5, "none")
    torch.testing.assert_close(ours.double(), truth, rtol=torch.finfo(dtype).eps, atol=0.0)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=str)
@pytest.mark.parametrize("temperature", [1.0, 2.0])
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_teacher_with_zero_probabilities(
    dtype: torch.dtype, temperature: float, reduction: str
) -> None:
    """-inf teacher logits (classes it rules out) contribute 0, in value and gradient.

    ``F.kl_div`` itself gives NaN there (0 * -inf), so the oracle replaces -inf by -1e30: the
    class then has probability exactly 0 and every term involving it is an exact 0.
    """
    student64, teacher64 = _logits((4, 6), seed=3)
    teacher64[0, [1, 4]] = float("-inf")
    teacher64[2, :5] = float("-inf")  # a one-hot teacher
    teacher64[3, 2] = float("-inf")
    student64[3, 2] = float("-inf")  # both rule the class out
    student, teacher = student64.to(dtype), teacher64.to(dtype)
    upstream = torch.rand((4,) if reduction == "none" else (), dtype=torch.float64) + 0.5

    ours = _loss_and_grads(
        kl_divergence, student, teacher, upstream.to(dtype), temperature, reduction
    )
    for tensor in ours:
        assert torch.isfinite(tensor).all()

    def finite(logits: Tensor) -> Tensor:
        return logits.masked_fill(logits == float("-inf"), -1e30)

    truth = _loss_and_grads(
        _torch_kl,
        finite(student.double()),
        finite(teacher.double()),
        upstream,
        temperature,
        reduction,
    )
    theirs = _loss_and_grads(
        _torch_kl, finite(student), finite(teacher), upstream.to(dtype), temperature, reduction
    )
    _assert_parity(ours, theirs, truth, dtype)


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_mask_scores_only_the_masked_in_tokens(reduction: str) -> None:
    student, teacher = _logits((2, 5, 6), seed=21)
    mask = torch.tensor([[True, False, True, True, False], [False, False, True, False, True]])
    upstream = torch.rand(mask.shape if reduction == "none" else (), dtype=torch.float64) + 0.5

    ours = _loss_and_grads(kl_divergence, student, teacher, upstream, 2.0, reduction, mask=mask)

    def on_masked_rows(student: Tensor, teacher: Tensor) -> Tensor:
        kept = _torch_kl(student[mask], teacher[mask], 2.0, reduction)
        if reduction != "none":
            return kept
        return torch.zeros(mask.shape, dtype=kept.dtype).masked_scatter(mask, kept)

    truth = _loss_and_grads(on_masked_rows, student, teacher, upstream)
    for mine, true in zip(ours, truth, strict=True):
        torch.testing.assert_close(mine, true, rtol=1e-12, atol=1e-12)
    # Unscored rows get exactly nothing, not a rounding error's worth.
    assert torch.count_nonzero(ours[1][~mask]) == 0
    assert torch.count_nonzero(ours[2][~mask]) == 0


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_all_masked_gives_zero_with_zero_gradients(reduction: str) -> None:
    """The documented policy: a mean over no token is 0 (PyTorch's batchmean of nothing: NaN)."""
    student, teacher = _logits((3, 4, 5), seed=8)
    mask = torch.zeros(3, 4, dtype=torch.bool)
    upstream = torch.ones((3, 4) if reduction == "none" else ())
    loss, student_grad, teacher_grad = _loss_and_grads(
        kl_divergence, student, teacher, upstream, 1.5, reduction, mask=mask
    )
    assert torch.count_nonzero(loss) == 0
    assert torch.count_nonzero(student_grad) == 0
    assert torch.count_nonzero(teacher_grad) == 0


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("shape", [(11,), *SHAPES], ids=str)
@pytest.mark.parametrize("temperature", [1.0, 2.5])
def test_batchmean_is_pytorchs(
    dtype: torch.dtype, shape: tuple[int, ...], temperature: float
) -> None:
    """The sum over every token divided by the first dimension's size (V for one ``[V]`` row)."""
    student64, teacher64 = _logits(shape, seed=3 * sum(shape))
    student, teacher = student64.to(dtype), teacher64.to(dtype)
    one = torch.tensor(1.0, dtype=torch.float64)
    args = (temperature, "batchmean")
    ours = _loss_and_grads(kl_divergence, student, teacher, one.to(dtype), *args)
    assert ours[0].dtype == dtype
    assert ours[0].shape == ()
    truth = _loss_and_grads(_torch_kl, student.double(), teacher.double(), one, *args)
    theirs = _loss_and_grads(_torch_kl, student, teacher, one.to(dtype), *args)
    _assert_parity(ours, theirs, truth, dtype)


def test_batchmean_with_a_mask_divides_the_masked_sum_by_the_first_dimension() -> None:
    student, teacher = _logits((2, 5, 6), seed=22)
    mask = torch.tensor([[True, False, True, True, False], [False, False, True, False, True]])
    one = torch.tensor(1.0, dtype=torch.float64)
    ours = _loss_and_grads(kl_divergence, student, teacher, one, 2.0, "batchmean", mask=mask)

    def masked_sum_over_batch(student: Tensor, teacher: Tensor) -> Tensor:
        kept = _torch_kl(student[mask], teacher[mask], 2.0, "sum")
        return kept / student.shape[0]

    truth = _loss_and_grads(masked_sum_over_batch, student, teacher, one)
    for mine, true in zip(ours, truth, strict=True):
        torch.testing.assert_close(mine, true, rtol=1e-12, atol=1e-12)


def test_batchmean_of_an_empty_batch_is_zero() -> None:
    """The documented policy again: PyTorch's batchmean of nothing is NaN, ours is 0."""
    student = torch.zeros(0, 7, requires_grad=True)
    loss = kl_divergence(student, torch.zeros(0, 7), reduction="batchmean")
    loss.backward()  # type: ignore[no-untyped-call]
    assert loss.item() == 0.0
    assert student.grad is not None
    assert student.grad.shape == (0, 7)


DISTILL_GRID = list(
    itertools.product([(6, 9), (2, 4, 9)], [1.0, 2.0, 4.0], [0.0, 0.3, 1.0], [-100, 2])
)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=str)
@pytest.mark.parametrize(("shape", "temperature", "alpha", "ignore_index"), DISTILL_GRID)
def test_distillation_loss_matches_torch(
    dtype: torch.dtype, shape: tuple[int, ...], temperature: float, alpha: float, ignore_index: int
) -> None:
    student64, teacher64 = _logits(shape, seed=5 * sum(shape))
    generator = torch.Generator().manual_seed(1)
    target = torch.randint(0, shape[-1], shape[:-1], generator=generator)
    target.view(-1)[::4] = ignore_index
    target.view(-1)[1] = 2  # a class that is ignore_index in half the cases
    student, teacher = student64.to(dtype), teacher64.to(dtype)
    args = (target, temperature, alpha, ignore_index)
    one = torch.tensor(1.0, dtype=dtype)

    ours = _loss_and_grads(distillation_loss, student, teacher, one, *args)
    assert ours[0].dtype == dtype
    truth = _loss_and_grads(
        _torch_distillation, student.double(), teacher.double(), one.double(), *args
    )
    theirs = _loss_and_grads(_torch_distillation, student, teacher, one, *args)
    _assert_parity(ours, theirs, truth, dtype)


def test_distillation_with_every_target_ignored_is_zero() -> None:
    student, teacher = _logits((3, 5), seed=2)
    target = torch.full((3,), -100)
    loss, student_grad, teacher_grad = _loss_and_grads(
        distillation_loss, student, teacher, torch.tensor(1.0), target, 2.0, 0.5
    )
    assert loss.item() == 0.0
    assert torch.count_nonzero(student_grad) == 0
    assert torch.count_nonzero(teacher_grad) == 0


def test_identical_distributions_have_zero_divergence() -> None:
    """Closed form: KL(p || p) = 0, and a shift of the logits does not change p."""
    logits, _ = _logits((4, 8), seed=4)
    loss = kl_divergence(logits, logits + 7.0, 1.7, "none")
    torch.testing.assert_close(loss, torch.zeros(4, dtype=torch.float64), rtol=0.0, atol=1e-14)
