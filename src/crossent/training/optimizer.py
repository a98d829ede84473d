"""How the weights move: AdamW, its learning-rate schedule, gradient clipping and autocast.

* AdamW decays the matrices (and embeddings) only, not biases and norms.
* The learning rate warms up linearly from 0 over ``warmup_steps``, then decays by a cosine to
  ``min_lr_ratio`` of its peak at ``max_steps`` (``decay_steps`` when set, as in a run extended
  on resume) and stays there.
* AdamW is PyTorch's fused implementation on CUDA and on the CPU: one pass over each
  parameter instead of a dozen element-wise operations (on two CPU cores a step of the ``gpt2``
  preset's 124M parameters took 0.44 s of CPU fused against 1.84 s unfused).
* bfloat16 autocast (:func:`autocast_dtype`) runs on a CUDA device that supports it
  (``autocast="auto"``), or when asked for (``"bfloat16"``), on CUDA or the CPU; everything else
  runs in float32. ``"auto"`` stays float32 on a CPU even where bf16 matrix products are fast
  (:func:`crossent.hardware.bf16_matmul_is_fast`): bf16 changes the losses of a run (by 5e-4
  nats after three steps of the tests' tiny model, more as the runs diverge) and would make the
  default run's numbers depend on the CPU it ran on; ``--autocast bfloat16`` is the choice to make
  there (its speed against float32: docs/benchmarks.md, "crossent train against a plain
  PyTorch loop").
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

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
        fused=device.type in ("cuda", "cpu"),
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


def autocast_dtype(config: TrainConfig, device: torch.device) -> torch.dtype | None:
    """The dtype the forward pass autocasts to on ``device``, None for float32 throughout (see
    the module docstring for what ``config.autocast`` chooses)."""
    wanted = config.autocast == "bfloat16" or (
        config.autocast == "auto" and device.type == "cuda" and torch.cuda.is_bf16_supported()
    )
    return torch.bfloat16 if wanted else None


def autocast(config: TrainConfig, device: torch.device) -> contextlib.AbstractContextManager[Any]:
    """The autocast context of the forward pass (:func:`autocast_dtype`)."""
    dtype = autocast_dtype(config, device)
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)


def head_in_autocast_dtype(
    hidden: Tensor, weight: Tensor, bias: Tensor | None, dtype: torch.dtype | None
) -> tuple[Tensor, Tensor, Tensor | None]:
    """The fused loss's inputs under autocast to ``dtype``: the hidden states and the LM head
    cast to it, as autocast casts the inputs of ``F.linear`` (None: as they are).

    Autocast leaves the final norm's output in float32, and a custom autograd function sees
    its inputs' dtypes, not autocast's; cast here, the head's three matrix products run in bf16
    as a plain ``F.linear`` head's do under autocast, with the loss's own float32 softmax and
    gradient accumulation (:func:`crossent.linear_cross_entropy`). The gradients flow back
    through the casts into the float32 weights.
    """
    if dtype is None:
        return hidden, weight, bias
    return hidden.to(dtype), weight.to(dtype), bias.to(dtype) if bias is not None else None


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
