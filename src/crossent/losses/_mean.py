"""The one rule for a mean over nothing: it is 0, with zero gradients, never NaN.

Every loss's ``reduction="mean"`` divides a sum over the scored items by their count (or summed
class weight). When nothing is scored (every target ignored, everything masked, an empty batch)
every term of that sum is 0, so dividing by 1 instead of 0 gives the documented 0 and keeps a
batch of padding from poisoning training. :mod:`crossent.losses.cross_entropy` states the policy
for users.
"""

from __future__ import annotations

from typing import overload

import torch
from torch import Tensor


@overload
def mean_denominator(count: int) -> int: ...


@overload
def mean_denominator(count: Tensor) -> Tensor: ...


def mean_denominator(count: int | Tensor) -> int | Tensor:
    """``count``, or 1 where it is 0: what a mean over ``count`` scored items divides by.

    A tensor stays on its device (no host sync); an ``int`` stays an ``int``.
    """
    if isinstance(count, Tensor):
        return torch.where(count == 0, torch.ones_like(count), count)
    return max(count, 1)
