"""How close to the truth a number computed at a low precision must be.

The rule, from Apple's cut-cross-entropy tests: an implementation computing at some dtype passes
when its error against a float64 ground truth is no worse than PyTorch's own error at that dtype,
plus a margin of a few machine epsilons of that dtype, relative to the size of the numbers
compared. PyTorch's error measures how hard the input is (large logits, long sums, underflow);
the margin allows for a different but equally good order of operations.

The test suite's parity tests (``tests/oracles.py``) and the checks of :mod:`crossent.explain`
both judge by this rule, so a number ``crossent explain`` accepts is one the tests would accept.

This module imports nothing of crossent, only PyTorch.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Final

import torch
from torch import Tensor

# float64 has no better truth to be compared with, so its margin is wider in epsilons; the
# half-precision dtypes' epsilons are already coarse enough that a few of them suffice.
MARGIN_EPS: Final[Mapping[torch.dtype, float]] = MappingProxyType(
    {torch.float64: 64.0, torch.float32: 16.0, torch.float16: 4.0, torch.bfloat16: 4.0}
)
"""The margin beyond PyTorch's own error, in machine epsilons of each floating-point dtype."""


def margin(dtype: torch.dtype) -> float:
    """The relative margin allowed at ``dtype`` beyond PyTorch's own error.

    Args:
        dtype: the dtype the implementation computed in.

    Returns:
        ``MARGIN_EPS[dtype]`` machine epsilons of ``dtype``, e.g. ``16 * 2 ** -23`` for float32.

    Raises:
        ValueError: ``dtype`` is not one of the floating-point dtypes of :data:`MARGIN_EPS`.

    Example:
        >>> margin(torch.float32) == 16 * torch.finfo(torch.float32).eps
        True
    """
    try:
        epsilons = MARGIN_EPS[dtype]
    except KeyError:
        known = ", ".join(str(known).removeprefix("torch.") for known in MARGIN_EPS)
        raise ValueError(f"no tolerance for {dtype}; the rule covers {known}") from None
    return epsilons * torch.finfo(dtype).eps


def allowed_error(torch_error: float, dtype: torch.dtype, scale: float = 1.0) -> float:
    """The largest error against the truth an implementation may make, for one number.

    Args:
        torch_error: ``|PyTorch's value - truth|``, PyTorch computing at ``dtype``.
        dtype: the dtype both computed in.
        scale: the size the margin is relative to, e.g. ``max(1, |truth|)``.

    Returns:
        ``torch_error + margin(dtype) * scale``.

    Example:
        >>> allowed_error(0.0, torch.float64, scale=2.0) == 128 * 2.0**-52
        True
    """
    return torch_error + margin(dtype) * scale


def worse_than_torch(
    ours: Tensor, torch_value: Tensor, truth: Tensor, dtype: torch.dtype
) -> Tensor:
    """Which elements of ``ours`` are further from ``truth`` than the rule allows.

    The margin of an element is relative to its own size plus the largest size among ``truth``,
    so that near-zero entries of a gradient are judged on the scale of the gradient, not on their
    own. All three tensors are compared in float64.

    Args:
        ours: the implementation's values, any shape.
        torch_value: PyTorch's values at ``dtype``, the same shape.
        truth: the float64 ground truth, the same shape.
        dtype: the dtype ``ours`` and ``torch_value`` were computed in.

    Returns:
        A boolean tensor of ``truth``'s shape, True where ``ours`` fails the rule.

    Example:
        >>> truth = torch.tensor([1.0, 2.0], dtype=torch.float64)
        >>> worse_than_torch(truth + 1e-3, truth.float(), truth, torch.float32).tolist()
        [True, True]
    """
    truth = truth.double()
    ours_error = (ours.double() - truth).abs()
    torch_error = (torch_value.double() - truth).abs()
    largest = truth.abs().max().item() if truth.numel() else 0.0
    # 1e-30 keeps a margin above 0 where the truth is exactly 0 everywhere
    allowed = torch_error + margin(dtype) * (truth.abs() + largest + 1e-30)
    return ours_error > allowed
