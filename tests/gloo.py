"""A world of CPU processes joined by a gloo process group, for the tests of collectives.

Starting processes that import torch costs seconds, so a test module spawns each world once (in
a module-scoped fixture) and every rank saves what the tests then check.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch.multiprocessing.spawn import spawn

# rank_main(rank, world_size, out_dir, *args), run on every rank inside the process group.
RankMain = Callable[..., None]


def spawn_gloo_world(rank_main: RankMain, world_size: int, out_dir: Path, *args: Any) -> None:
    """Run ``rank_main`` in ``world_size`` fresh processes joined into one gloo group.

    ``rank_main`` must be a module-level function (the processes import it); it writes its
    results under ``out_dir``, where the group also meets (a rendezvous file).
    """
    rendezvous = f"file://{out_dir / 'rendezvous'}"
    spawn(  # type: ignore[no-untyped-call]
        _join_and_run,
        args=(world_size, rendezvous, rank_main, str(out_dir), args),
        nprocs=world_size,
    )


def _join_and_run(
    rank: int,
    world_size: int,
    rendezvous: str,
    rank_main: RankMain,
    out_dir: str,
    args: tuple[Any, ...],
) -> None:
    torch.set_num_threads(1)  # the ranks share a few cores
    dist.init_process_group(
        "gloo",
        init_method=rendezvous,
        rank=rank,
        world_size=world_size,
        timeout=datetime.timedelta(seconds=60),
    )
    try:
        rank_main(rank, world_size, Path(out_dir), *args)
    finally:
        dist.destroy_process_group()
