"""What a micro-batch's loss is: the fused cross-entropy of the student's head, or distillation.

Both return two sums over the micro-batch's tokens: the objective to differentiate, and the
student's plain cross-entropy (float64, detached) that the run logs as its training loss.

Under bf16 autocast the trunk runs in bf16 and so does the head: its hidden states and weight are
cast as autocast casts ``F.linear``'s (:func:`crossent.training.optimizer.head_in_autocast_dtype`),
and :func:`crossent.linear_cross_entropy` does its softmax and accumulates its gradients in
float32. The logged loss is summed from the loss's float32 per-token losses, not from its
reduced loss, which is returned in the inputs' dtype and would carry only 2-3 digits in bf16.
The gradient of that bf16 sum reaches the loss as ``1 / normaliser`` rounded to bf16 (exact
for a power of two, else within 0.2 %): a constant scale of every step's gradient, which AdamW
divides out.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

from crossent.losses.cross_entropy import cross_entropy
from crossent.losses.distill import distillation_loss
from crossent.losses.linear import linear_cross_entropy_with_stats
from crossent.training.config import TrainConfig
from crossent.training.model import TrainingModel
from crossent.training.optimizer import head_in_autocast_dtype

if TYPE_CHECKING:
    from crossent.models.protocol import CausalLM


def cross_entropy_sums(
    model: TrainingModel,
    hidden: Tensor,
    targets: Tensor,
    config: TrainConfig,
    head_dtype: torch.dtype | None,
    objective: bool,
) -> tuple[Tensor, Tensor]:
    """The fused loss of ``hidden`` ``(b, T, d)`` through the model's head against ``targets``
    ``(b, T)``, summed, with label smoothing and z-loss; and the plain cross-entropy's sum
    (computed again, without them, only when ``objective`` says the two differ)."""
    hidden, weight, bias = head_in_autocast_dtype(
        hidden, model.head_weight, model.head_bias, head_dtype
    )
    stats = linear_cross_entropy_with_stats(
        hidden, weight, targets, bias, reduction="sum", label_smoothing=config.label_smoothing,
        z_loss=config.z_loss,
    )  # fmt: skip
    plain = stats.token_loss.detach().double().sum()
    if objective:
        with torch.no_grad():
            ce = linear_cross_entropy_with_stats(hidden, weight, targets, bias).token_loss
            plain = ce.double().sum()
    return stats.loss, plain


def distillation_sums(
    model: TrainingModel,
    teacher: CausalLM,
    inputs: Tensor,
    hidden: Tensor,
    targets: Tensor,
    config: TrainConfig,
) -> tuple[Tensor, Tensor]:
    """The distillation loss of the student's logits (from ``hidden``) against the teacher's on
    ``inputs``, summed over the tokens; and the student's plain cross-entropy's sum."""
    with torch.no_grad():
        teacher_hidden = teacher.hidden_states(inputs)
        teacher_logits = nn.functional.linear(
            teacher_hidden, teacher.head_weight, teacher.head_bias
        )  # (b, T, V)
    logits = nn.functional.linear(hidden, model.head_weight, model.head_bias)
    flat = logits.flatten(0, 1).float()  # (b * T, V)
    total = distillation_loss(
        flat, teacher_logits.flatten(0, 1).float(), targets.flatten(),
        config.temperature, config.alpha,
    ) * targets.numel()  # fmt: skip
    with torch.no_grad():
        plain = cross_entropy(flat, targets.flatten(), reduction="sum")
    return total, plain.detach().double()
