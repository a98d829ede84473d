"""torch.distributed for crossent's jobs, written once: process group, rank, world, device,
sharding, gathering and all-reduce.

A single process is a world of one: every function here works, and returns what a one-process
run needs, without ``torch.distributed`` being initialised. Every other function is a
collective when the world is larger: each rank of the group must call it, in the same order.

Sharding is round-robin: item ``k`` of a sequence every rank walks in the same order belongs to
rank ``k % world`` (:func:`deal`), so the ranks share the work without talking to each other.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, TypeVar

import torch
import torch.distributed as dist

if TYPE_CHECKING:
    from torch.distributed import ProcessGroup

_T = TypeVar("_T")


@contextlib.contextmanager
def process_group() -> Iterator[tuple[int, str | None]]:
    """Under torchrun, a process group for the run: yields (rank, this rank's device or None).

    gloo on the CPU, NCCL with one GPU per local rank; a single process yields (0, None).
    """
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        yield 0, None
        return
    if torch.cuda.is_available():
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local_rank)
        dist.init_process_group("nccl")
        device: str | None = f"cuda:{local_rank}"
    else:
        dist.init_process_group("gloo")
        device = "cpu"
    try:
        yield dist.get_rank(), device
    finally:
        dist.destroy_process_group()


def is_initialized() -> bool:
    """Whether a ``torch.distributed`` process group is running (False in a plain process)."""
    return dist.is_available() and dist.is_initialized()


def rank_and_world(group: ProcessGroup | None = None) -> tuple[int, int]:
    """This process's rank in ``group`` (default: the world) and the group's size; (0, 1) alone."""
    if not is_initialized():
        return 0, 1
    return dist.get_rank(group), dist.get_world_size(group)


def default_device(requested: str | torch.device | None = None) -> torch.device:
    """The device asked for, else the current CUDA device when there is one, else the CPU."""
    return torch.device(requested or ("cuda" if torch.cuda.is_available() else "cpu"))


def collective_device(group: ProcessGroup | None = None) -> torch.device:
    """Where a tensor must be to travel in ``group``: the current CUDA device for NCCL, else CPU."""
    if is_initialized() and dist.get_backend(group) == dist.Backend.NCCL:
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def deal(items: Iterable[_T], group: ProcessGroup | None = None) -> Iterator[tuple[_T, bool]]:
    """Every item, with whether it is this rank's: item ``k`` is rank ``k % world``'s.

    Every rank must walk the same items in the same order; alone, every item is this one's.
    """
    rank, world = rank_and_world(group)
    for number, item in enumerate(items):
        yield item, number % world == rank


def all_sum(value: torch.Tensor, group: ProcessGroup | None = None) -> torch.Tensor:
    """``value`` summed over the ranks of ``group``, as a new tensor; ``value`` itself alone.

    ``value`` must already be on :func:`collective_device` (or be where the backend accepts it).
    """
    if rank_and_world(group)[1] > 1:
        value = value.clone()
        dist.all_reduce(value, op=dist.ReduceOp.SUM, group=group)
    return value


def all_sum_floats(
    rows: Sequence[Sequence[float]], group: ProcessGroup | None = None
) -> list[list[float]]:
    """Numbers summed element-wise over the ranks of ``group``, in float64; as given alone.

    The numbers travel as one float64 tensor on :func:`collective_device`, so integer counts
    stay exact while every sum is below 2**53. Every rank must give rows of the same shape.
    """
    if rank_and_world(group)[1] == 1:
        return [[float(value) for value in row] for row in rows]
    sums = torch.tensor(rows, dtype=torch.float64, device=collective_device(group))
    dist.all_reduce(sums, op=dist.ReduceOp.SUM, group=group)
    summed: list[list[float]] = sums.tolist()
    return summed


def gather_lists(items: list[_T], group: ProcessGroup | None = None) -> list[_T]:
    """Every rank's ``items`` (any picklable objects) joined in rank order, on every rank.

    Alone, ``items`` itself.
    """
    world = rank_and_world(group)[1]
    if world == 1:
        return items
    everyone: list[list[_T] | None] = [None] * world
    dist.all_gather_object(everyone, items, group=group)
    return [item for part in everyone for item in part or []]
