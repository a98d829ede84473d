"""crossent.distributed in a single process: a world of one, with no process group to start.

The collectives themselves run across real processes in test_metrics_distributed.py (gloo) and
test_cli_distributed.py (torchrun), against the numbers of one process.
"""

from __future__ import annotations

import torch
import torch.distributed as dist

from crossent.distributed import (
    all_sum,
    all_sum_floats,
    collective_device,
    deal,
    default_device,
    gather_lists,
    is_initialized,
    rank_and_world,
)


def test_a_single_process_is_rank_0_of_a_world_of_1() -> None:
    assert not dist.is_initialized()
    assert not is_initialized()
    assert rank_and_world() == (0, 1)
    assert collective_device() == torch.device("cpu")


def test_a_single_process_is_dealt_every_item_in_order() -> None:
    assert list(deal("abc")) == [("a", True), ("b", True), ("c", True)]


def test_sums_and_gathers_of_one_process_are_its_own_values() -> None:
    value = torch.tensor([1.5, 2.0], dtype=torch.float64)
    assert all_sum(value) is value
    assert all_sum_floats([[1, 2.5], [3, 4]]) == [[1.0, 2.5], [3.0, 4.0]]
    items = [("a", 1), ("b", 2)]
    assert gather_lists(items) is items


def test_the_device_asked_for_wins_else_cuda_when_present() -> None:
    assert default_device("cpu") == torch.device("cpu")
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert default_device(None) == torch.device(expected)
