"""torch.distributed for crossent's jobs, written once: the process group, rank and world.

A single process is a world of one: every function here works, and returns what a one-process
run needs, without ``torch.distributed`` being initialised.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator


@contextlib.contextmanager
def process_group() -> Iterator[tuple[int, str | None]]:
    """Under torchrun, a process group for the run: yields (rank, this rank's device or None).

    gloo on the CPU, NCCL with one GPU per local rank; a single process yields (0, None).
    """
    import torch
    import torch.distributed as dist

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
