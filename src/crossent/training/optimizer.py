"""How the weights move: AdamW, its learning-rate schedule, gradient clipping and autocast.

* AdamW decays the matrices (and embeddings) only, not biases and norms.
* The learning rate warms up linearly from 0 over ``warmup_steps``, then decays by a cosine to
  ``min_lr_ratio`` of its peak at ``max_steps`` (``decay_steps`` when set, as in a run extended
  on resume) and stays there.
* bfloat16 autocast runs on a CUDA device that supports it (``autocast="auto"``), or when asked
  for; everything else runs in float32.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from crossent.training.config import TrainConfig


def make_optimizer(
    module: nn.Module, config: TrainConfig, device: torch.device
) -> torch.optim.AdamW:
    """AdamW with weight decay on matrices (and embeddings) only, not on biases and norms."""
    decay = [p for p in module.parameters() if p.requires_grad and p.dim() >= 2]
    no_decay = [p for p in module.parameters() if p.requires_grad and p.dim() < 2]
    return torch.optim.AdamW(
        [
            {"params": decay, "weight_decay": config.weight_decay},
            {"params": no_decay, "weight_decay": 0.0},
        ],
        lr=config.lr,
        betas=config.betas,
        fused=device.type == "cuda",
    )


def make_schedule(
    optimizer: torch.optim.Optimizer, config: TrainConfig
) -> torch.optim.lr_scheduler.LambdaLR:
    """The learning rate of every step: :func:`lr_factor` times ``config.lr``."""
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor(config))


def lr_factor(config: TrainConfig) -> Callable[[int], float]:
    """Linear warm-up to 1, then cosine decay to ``min_lr_ratio`` at
    :attr:`~crossent.training.config.TrainConfig.schedule_steps`, and that floor after it.

    >>> factor = lr_factor(TrainConfig(warmup_steps=2, max_steps=6, min_lr_ratio=0.1))
    >>> [round(factor(step), 3) for step in range(7)]
    [0.5, 1.0, 1.0, 0.868, 0.55, 0.232, 0.1]
    >>> extended = lr_factor(TrainConfig(warmup_steps=2, max_steps=9, decay_steps=6))
    >>> [round(extended(step), 3) for step in range(10)]
    [0.5, 1.0, 1.0, 0.868, 0.55, 0.232, 0.1, 0.1, 0.1, 0.1]
    """
    decay_steps = config.schedule_steps

    def factor(step: int) -> float:
        if step < config.warmup_steps:
            return (step + 1) / config.warmup_steps
        span = max(1, decay_steps - config.warmup_steps)
        progress = min(1.0, (step - config.warmup_steps) / span)
        cosine = 0.5 * (1.0 + math.cos(math.pi * progress))
        return config.min_lr_ratio + (1.0 - config.min_lr_ratio) * cosine

    return factor


def autocast(config: TrainConfig, device: torch.device) -> contextlib.AbstractContextManager[Any]:
    """The autocast context of the forward pass and the loss (see the module docstring)."""
    wanted = config.autocast == "bfloat16" or (
        config.autocast == "auto" and device.type == "cuda" and torch.cuda.is_bf16_supported()
    )
    if not wanted:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16)


def clip_and_step(
    module: nn.Module,
    config: TrainConfig,
    optimizer: torch.optim.Optimizer,
    schedule: torch.optim.lr_scheduler.LRScheduler,
    losses_finite: bool = True,
) -> bool:
    """Clip the gradient norm to ``grad_clip`` (unless 0), step, clear the gradients.

    A step whose loss (``losses_finite`` False) or gradient norm is NaN or infinite is not
    taken: the weights and the optimizer's moments stay as they were, and only the schedule
    moves on, so that the step counts. Under torchrun the processes agree (one process's
    non-finite loss stops the step on all). Returns whether the step was taken.
    """
    parameters = [parameter for parameter in module.parameters() if parameter.grad is not None]
    gradients = [parameter.grad for parameter in parameters if parameter.grad is not None]
    norm = nn.utils.get_total_norm(gradients)
    finite = torch.isfinite(norm) & losses_finite
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        flag = finite.to(torch.int32)
        torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MIN)
        finite = flag.bool()
    taken = bool(finite)
    if taken:
        if config.grad_clip > 0:
            nn.utils.clip_grads_with_norm_(parameters, config.grad_clip, norm)
        optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    schedule.step()
    return taken
