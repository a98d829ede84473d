"""``torch.nn.Module`` wrappers of the losses, for code that builds its criterion once.

Each module validates its options when it is built, so a bad option fails where it was written,
not at the first training step; ``forward`` then calls the functional form.
"""

from __future__ import annotations

import torch
from torch import Tensor

from crossent.losses._checks import (
    Reduction,
    check_floating,
    check_loss_options,
    check_positive,
)
from crossent.losses.cross_entropy import cross_entropy
from crossent.losses.linear import linear_cross_entropy


class CrossEntropyLoss(torch.nn.Module):
    """Module form of :func:`crossent.cross_entropy` (class dimension last).

    Example:
        >>> criterion = CrossEntropyLoss(label_smoothing=0.1)
        >>> loss = criterion(torch.zeros(2, 4, 10), torch.zeros(2, 4, dtype=torch.long))
        >>> round(loss.item(), 4)  # uniform logits: ln(10)
        2.3026
    """

    weight: Tensor | None

    def __init__(
        self,
        weight: Tensor | None = None,
        ignore_index: int = -100,
        reduction: Reduction = "mean",
        label_smoothing: float = 0.0,
        *,
        z_loss: float = 0.0,
        softcap: float | None = None,
    ) -> None:
        super().__init__()
        check_loss_options(reduction, label_smoothing, z_loss, softcap)
        if weight is not None:
            check_floating("weight", weight)
            if weight.ndim != 1:
                raise ValueError(
                    f"weight must have one entry per class (1-D), got shape {tuple(weight.shape)}"
                )
        self.register_buffer("weight", weight)
        self.ignore_index = ignore_index
        self.reduction: Reduction = reduction
        self.label_smoothing = label_smoothing
        self.z_loss = z_loss
        self.softcap = softcap

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        """Loss of ``[..., V]`` logits against ``[...]`` class ids or ``[..., V]`` probabilities."""
        return cross_entropy(
            logits,
            target,
            self.weight,
            self.ignore_index,
            self.reduction,
            self.label_smoothing,
            z_loss=self.z_loss,
            softcap=self.softcap,
        )

    def extra_repr(self) -> str:
        return (
            f"ignore_index={self.ignore_index}, reduction={self.reduction!r}, "
            f"label_smoothing={self.label_smoothing}, z_loss={self.z_loss}, softcap={self.softcap}"
        )


class LinearCrossEntropyLoss(torch.nn.Module):
    """Module form of :func:`crossent.linear_cross_entropy`: the LM-head loss, fused.

    The head's weight is an argument of ``forward``, not a parameter of this module, so a
    weight-tied embedding can be passed as it is.

    Example:
        >>> criterion = LinearCrossEntropyLoss()
        >>> head = torch.nn.Linear(8, 50, bias=False)
        >>> hidden, target = torch.randn(2, 3, 8), torch.randint(0, 50, (2, 3))
        >>> loss = criterion(hidden, head.weight, target)
        >>> torch.allclose(loss, CrossEntropyLoss()(head(hidden), target))
        True
    """

    def __init__(
        self,
        ignore_index: int = -100,
        reduction: Reduction = "mean",
        label_smoothing: float = 0.0,
        *,
        z_loss: float = 0.0,
        softcap: float | None = None,
        chunk_rows: int | None = None,
    ) -> None:
        super().__init__()
        check_loss_options(reduction, label_smoothing, z_loss, softcap)
        if chunk_rows is not None:
            check_positive("chunk_rows", chunk_rows)
        self.ignore_index = ignore_index
        self.reduction: Reduction = reduction
        self.label_smoothing = label_smoothing
        self.z_loss = z_loss
        self.softcap = softcap
        self.chunk_rows = chunk_rows

    def forward(
        self, hidden: Tensor, weight: Tensor, target: Tensor, bias: Tensor | None = None
    ) -> Tensor:
        """Loss of ``hidden @ weight.T + bias`` (``[..., d]``, ``[V, d]``) against ``[...]``."""
        return linear_cross_entropy(
            hidden,
            weight,
            target,
            bias,
            ignore_index=self.ignore_index,
            reduction=self.reduction,
            label_smoothing=self.label_smoothing,
            z_loss=self.z_loss,
            softcap=self.softcap,
            chunk_rows=self.chunk_rows,
        )

    def extra_repr(self) -> str:
        return (
            f"ignore_index={self.ignore_index}, reduction={self.reduction!r}, "
            f"label_smoothing={self.label_smoothing}, z_loss={self.z_loss}, "
            f"softcap={self.softcap}, chunk_rows={self.chunk_rows}"
        )
