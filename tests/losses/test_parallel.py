"""Vocabulary-parallel cross-entropy across real processes (gloo), against the unsharded loss.

Starting processes that import torch costs seconds, so one spawn per world size (2 and 3) runs
every case: each rank takes its slice of common float64 logits (or of the LM head's rows),
computes the loss and its gradients, and saves them; the tests compare each rank's results with
PyTorch's loss (``F.cross_entropy`` plus the z-loss term, ``oracles.composed_cross_entropy``) on
the full, unsharded float64 logits. V = 101 is prime, so the
slices are uneven (51 + 50, 34 + 34 + 33), and the targets hit every slice's first and last
class. The world of three also runs cases over a two-rank subgroup that leaves rank 0 out, so
that group ranks differ from global ranks.
"""

from __future__ import annotations

import functools
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor

from crossent.losses.parallel import (
    vocab_parallel_cross_entropy,
    vocab_parallel_linear_cross_entropy,
)
from gloo import spawn_gloo_world
from oracles import composed_cross_entropy

VOCAB = 101
DIM = 16
SHAPE = (2, 9)
PAIR = (1, 2)  # the subgroup of the world of three
TOLERANCE = {torch.float64: 1e-12, torch.float32: 1e-5}


@dataclass(frozen=True)
class Case:
    name: str
    linear: bool
    reduction: str
    label_smoothing: float = 0.0
    z_loss: float = 0.0
    all_ignored: bool = False
    bias: bool = False
    dtype: torch.dtype = torch.float64
    ignore_index: int = -100
    chunk_rows: int | None = None
    pair: bool = False


def _cases(world_size: int) -> list[Case]:
    cases = []
    for linear in (False, True):
        kind = "linear" if linear else "plain"
        for reduction in ("none", "sum", "mean"):
            for eps in (0.0, 0.1):
                for z_loss in (0.0, 1e-3):
                    cases.append(
                        Case(
                            f"{kind}-{reduction}-ls{eps}-z{z_loss}",
                            linear,
                            reduction,
                            eps,
                            z_loss,
                            bias=linear and eps > 0,
                            chunk_rows=4 if linear and z_loss else None,
                        )
                    )
            cases.append(
                Case(f"{kind}-{reduction}-all-ignored", linear, reduction, 0.1, 1e-3, True, linear)
            )
        cases.append(
            Case(f"{kind}-float32", linear, "mean", 0.1, 1e-3, bias=linear, dtype=torch.float32)
        )
        cases.append(Case(f"{kind}-ignore-index-7", linear, "sum", 0.1, ignore_index=7))
        if world_size == 3:
            cases.append(Case(f"{kind}-pair-group", linear, "mean", 0.1, 1e-3, pair=True))
    return cases


@dataclass(frozen=True)
class Inputs:
    logits: Tensor  # [*SHAPE, VOCAB] float64 (plain cases)
    hidden: Tensor  # [*SHAPE, DIM] (linear cases)
    weight: Tensor  # [VOCAB, DIM]
    bias: Tensor | None  # [VOCAB]
    target: Tensor  # [*SHAPE]
    upstream: Tensor  # [*SHAPE], the gradient fed to backward for reduction="none"


def _inputs(case: Case) -> Inputs:
    """The same tensors in every process: the seed comes from the case's name."""
    generator = torch.Generator().manual_seed(zlib.crc32(case.name.encode()))

    def randn(*shape: int) -> Tensor:
        return torch.randn(shape, generator=generator, dtype=torch.float64)

    logits = randn(*SHAPE, VOCAB) * 3
    logits[0, 1] += 1000.0  # a row whose softmax only survives if the max is subtracted first
    # Each slice's first and last class for both worlds, the vocabulary's ends, two ignored.
    special = [0, VOCAB - 1, 50, 51, 33, 34, 67, 68, case.ignore_index, case.ignore_index]
    drawn = torch.randint(0, VOCAB, (SHAPE[0] * SHAPE[1] - len(special),), generator=generator)
    target = torch.cat([torch.tensor(special), drawn])
    target = target[torch.randperm(target.numel(), generator=generator)].reshape(SHAPE)
    if case.all_ignored:
        target = torch.full(SHAPE, case.ignore_index)
    inputs = Inputs(
        logits=logits,
        hidden=randn(*SHAPE, DIM),
        weight=randn(VOCAB, DIM) * 0.5,
        bias=randn(VOCAB) if case.bias else None,
        target=target,
        upstream=randn(*SHAPE),
    )
    # float32 cases: every process rounds the same values, and the oracle sees the rounded ones.
    return Inputs(
        logits=inputs.logits.to(case.dtype),
        hidden=inputs.hidden.to(case.dtype),
        weight=inputs.weight.to(case.dtype),
        bias=inputs.bias.to(case.dtype) if inputs.bias is not None else None,
        target=inputs.target,
        upstream=inputs.upstream.to(case.dtype),
    )


def _slice(group_size: int, group_rank: int) -> slice:
    """This rank's contiguous classes: the larger slices first, as torch.tensor_split cuts."""
    bounds = torch.arange(VOCAB).tensor_split(group_size)[group_rank]
    return slice(int(bounds[0]), int(bounds[-1]) + 1)


def _options(case: Case) -> dict[str, Any]:
    return {
        "ignore_index": case.ignore_index,
        "reduction": case.reduction,
        "label_smoothing": case.label_smoothing,
        "z_loss": case.z_loss,
    }


def _backward(loss: Tensor, case: Case, upstream: Tensor) -> None:
    loss.backward(upstream if case.reduction == "none" else None)  # type: ignore[no-untyped-call]


def _run_sharded(case: Case, group: dist.ProcessGroup | None, classes: slice) -> dict[str, Tensor]:
    inputs = _inputs(case)
    if not case.linear:
        logits = inputs.logits[..., classes].clone().requires_grad_()
        loss = vocab_parallel_cross_entropy(logits, inputs.target, group, **_options(case))
        _backward(loss, case, inputs.upstream)
        assert logits.grad is not None
        return {"loss": loss.detach(), "grad_logits": logits.grad}
    hidden = inputs.hidden.clone().requires_grad_()
    weight = inputs.weight[classes].clone().requires_grad_()
    bias = inputs.bias[classes].clone().requires_grad_() if inputs.bias is not None else None
    loss = vocab_parallel_linear_cross_entropy(
        hidden, weight, inputs.target, bias, group, chunk_rows=case.chunk_rows, **_options(case)
    )
    _backward(loss, case, inputs.upstream)
    assert hidden.grad is not None
    assert weight.grad is not None
    results = {"loss": loss.detach(), "grad_hidden": hidden.grad, "grad_weight": weight.grad}
    if bias is not None:
        assert bias.grad is not None
        results["grad_bias"] = bias.grad
    return results


def _error_message(call: Callable[[], object]) -> str:
    try:
        call()
    except (ValueError, RuntimeError) as error:
        return f"{type(error).__name__}: {error}"
    return "no error"


def _errors(rank: int, world_size: int, pair: dist.ProcessGroup | None) -> dict[str, str]:
    """Errors that need a process group: every rank calls, every rank must raise."""
    classes = _slice(world_size, rank)
    logits = torch.zeros(*SHAPE, VOCAB, dtype=torch.float64)[..., classes]
    weight = torch.zeros(VOCAB, DIM, dtype=torch.float64)[classes]
    hidden = torch.zeros(*SHAPE, DIM, dtype=torch.float64)
    target = torch.zeros(SHAPE, dtype=torch.int64)
    target[1, 3] = VOCAB
    errors = {
        "plain_target": _error_message(lambda: vocab_parallel_cross_entropy(logits, target)),
        "linear_target": _error_message(
            lambda: vocab_parallel_linear_cross_entropy(hidden, weight, target)
        ),
    }
    if pair is not None and rank not in PAIR:
        errors["not_a_member"] = _error_message(
            lambda: vocab_parallel_cross_entropy(logits, target.clamp(max=0), pair)
        )
    return errors


def _rank_main(rank: int, world_size: int, out_dir: Path) -> None:
    pair = dist.new_group(list(PAIR)) if world_size == 3 else None  # every rank must call
    results: dict[str, Any] = {}
    for case in _cases(world_size):
        if case.pair:
            if rank in PAIR:
                classes = _slice(len(PAIR), PAIR.index(rank))
                results[case.name] = _run_sharded(case, pair, classes)
        else:
            results[case.name] = _run_sharded(case, None, _slice(world_size, rank))
    results["errors"] = _errors(rank, world_size, pair)
    torch.save(results, out_dir / f"rank-{rank}.pt")


@pytest.fixture(scope="module")
def rank_results(
    tmp_path_factory: pytest.TempPathFactory,
) -> Callable[[int], list[dict[str, Any]]]:
    """Each rank's saved results for a world size; spawns that world on first use."""
    spawned: dict[int, list[dict[str, Any]]] = {}

    def results(world_size: int) -> list[dict[str, Any]]:
        if world_size not in spawned:
            out_dir = tmp_path_factory.mktemp(f"world{world_size}")
            spawn_gloo_world(_rank_main, world_size, out_dir)
            spawned[world_size] = [
                torch.load(out_dir / f"rank-{rank}.pt", weights_only=True)
                for rank in range(world_size)
            ]
        return spawned[world_size]

    return results


def _unsharded(case: Case) -> dict[str, Tensor]:
    """The oracle: PyTorch's loss (plus z-loss) on the full logits, in float64."""
    inputs = _inputs(case)
    if case.linear:
        hidden = inputs.hidden.double().requires_grad_()
        weight = inputs.weight.double().requires_grad_()
        bias = inputs.bias.double().requires_grad_() if inputs.bias is not None else None
        logits = F.linear(hidden, weight, bias)
    else:
        logits = inputs.logits.double().requires_grad_()
    loss = composed_cross_entropy(logits, inputs.target, **_options(case))
    _backward(loss, case, inputs.upstream.double())
    if not case.linear:
        assert logits.grad is not None
        return {"loss": loss.detach(), "grad_logits": logits.grad}
    assert hidden.grad is not None
    assert weight.grad is not None
    truth = {"loss": loss.detach(), "grad_hidden": hidden.grad, "grad_weight": weight.grad}
    if bias is not None:
        assert bias.grad is not None
        truth["grad_bias"] = bias.grad
    return truth


def _rank_share(name: str, whole: Tensor, classes: slice) -> Tensor:
    """What a rank holds of an unsharded result: its classes, or all of it."""
    if name == "grad_logits":
        return whole[..., classes]
    if name in ("grad_weight", "grad_bias"):
        return whole[classes]
    return whole  # the loss, and grad_hidden (all-reduced in backward)


_WORLD_CASES = [(world_size, case) for world_size in (2, 3) for case in _cases(world_size)]


def _located(rank: int, name: str, message: str) -> str:
    """``assert_close``'s message, prefixed with where it failed."""
    return f"rank {rank}, {name}: {message}"


@pytest.mark.parametrize(
    ("world_size", "case"),
    _WORLD_CASES,
    ids=[f"world{world_size}-{case.name}" for world_size, case in _WORLD_CASES],
)
def test_every_rank_matches_the_unsharded_loss(
    rank_results: Callable[[int], list[dict[str, Any]]], world_size: int, case: Case
) -> None:
    truth = _unsharded(case)
    tolerance = TOLERANCE[case.dtype]
    ranks = PAIR if case.pair else tuple(range(world_size))
    for group_rank, rank in enumerate(ranks):
        ours = rank_results(world_size)[rank][case.name]
        classes = _slice(len(ranks), group_rank)
        assert set(ours) == set(truth), f"rank {rank}: results {sorted(ours)}"
        for name, whole in truth.items():
            value = ours[name]
            assert value.dtype == case.dtype, f"rank {rank}: {name} is {value.dtype}"
            torch.testing.assert_close(
                value.double(),
                _rank_share(name, whole, classes),
                rtol=tolerance,
                atol=tolerance,
                msg=functools.partial(_located, rank, name),
            )
        if case.all_ignored:
            assert all(not value.any() for value in ours.values()), "nothing scored: all zero"


@pytest.mark.parametrize("world_size", [2, 3])
def test_out_of_range_target_names_the_global_vocabulary(
    rank_results: Callable[[int], list[dict[str, Any]]], world_size: int
) -> None:
    expected = (
        f"ValueError: target {VOCAB} is outside the vocabulary (size {VOCAB}) at position (1, 3)"
    )
    for rank, results in enumerate(rank_results(world_size)):
        for name in ("plain_target", "linear_target"):
            message = results["errors"][name]
            assert message.startswith(expected), f"rank {rank}, {name}: {message}"


def test_a_rank_outside_the_group_is_told_so(
    rank_results: Callable[[int], list[dict[str, Any]]],
) -> None:
    message = rank_results(3)[0]["errors"]["not_a_member"]
    assert message.startswith("RuntimeError: this process is not a member"), message


def test_without_a_process_group_is_an_error() -> None:
    assert not dist.is_initialized()
    logits = torch.zeros(3, 5)
    target = torch.zeros(3, dtype=torch.int64)
    with pytest.raises(RuntimeError, match="init_process_group"):
        vocab_parallel_cross_entropy(logits, target)
    with pytest.raises(RuntimeError, match="init_process_group"):
        vocab_parallel_linear_cross_entropy(torch.zeros(3, 4), torch.zeros(5, 4), target)


def _ids(count: int) -> Tensor:
    return torch.zeros(count, dtype=torch.int64)


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (
            lambda: vocab_parallel_cross_entropy(torch.zeros(3, 5), _ids(4)),
            ValueError,
            r"logits \(3, 5\) needs target \(3,\), got \(4,\)",
        ),
        (
            lambda: vocab_parallel_cross_entropy(
                torch.zeros(3, 5, dtype=torch.int64), torch.zeros(3)
            ),
            TypeError,
            "logits must be a floating-point tensor",
        ),
        (
            lambda: vocab_parallel_cross_entropy(
                torch.zeros(3, 5),
                _ids(3),
                reduction="avg",  # type: ignore[arg-type]
            ),
            ValueError,
            "unknown reduction 'avg'",
        ),
        (
            lambda: vocab_parallel_cross_entropy(torch.zeros(3, 5), _ids(3), label_smoothing=1.5),
            ValueError,
            r"label_smoothing must be in \[0.0, 1.0\], got 1.5",
        ),
        (
            lambda: vocab_parallel_linear_cross_entropy(
                torch.zeros(3, 4), torch.zeros(5, 6), _ids(3)
            ),
            ValueError,
            r"this rank's shard of the vocabulary, with d = hidden's last dimension \(4\)",
        ),
        (
            lambda: vocab_parallel_linear_cross_entropy(
                torch.zeros(3, 4), torch.zeros(5, 4, dtype=torch.float64), _ids(3)
            ),
            TypeError,
            "hidden and weight must have the same dtype",
        ),
        (
            lambda: vocab_parallel_linear_cross_entropy(
                torch.zeros(3, 4), torch.zeros(5, 4), _ids(3), torch.zeros(4)
            ),
            ValueError,
            r"bias must have one entry per row of weight, shape \(5,\), got \(4,\)",
        ),
    ],
    ids=[
        "target-shape",
        "integer-logits",
        "reduction",
        "label-smoothing",
        "weight-shape",
        "dtype-mismatch",
        "bias-shape",
    ],
)
def test_local_argument_errors_come_before_any_collective(
    call: Callable[[], object], error: type[Exception], message: str
) -> None:
    # No process group exists here: these checks must run before the first collective.
    with pytest.raises(error, match=message):
        call()
