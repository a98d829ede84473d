"""Plain float64 numbers for the toy explanations: validated, and computed with Python's ``math``.

Python's ``math`` on floats is the independent route the toy distributions and the stability
cases are checked against: it shares no code with PyTorch or crossent.
"""

from __future__ import annotations

import math
from collections.abc import Sequence


def check_finite(values: Sequence[float], name: str, labels: Sequence[str]) -> None:
    """Refuse a value that is infinite or NaN, naming it as ``name(label)``.

    Raises:
        ValueError: the first value that is not a finite number.
    """
    for label, value in zip(labels, values, strict=True):
        if not math.isfinite(value):
            raise ValueError(f"{name}({label!r}) is {value}; it must be a finite number")


def log_softmax(logits: Sequence[float]) -> list[float]:
    """``ln softmax(z)`` in float64 with Python's math: ``z_i - max - ln sum_j e^(z_j - max)``.

    Subtracting the largest logit first keeps every exponential in [0, 1], so no logit overflows
    and the largest probability never underflows.

    Example:
        >>> [round(value, 6) for value in log_softmax([1000.0, 1000.0])]
        [-0.693147, -0.693147]
    """
    top = max(logits)
    log_normaliser = top + math.log(math.fsum(math.exp(z - top) for z in logits))
    return [z - log_normaliser for z in logits]


def log(value: float) -> float:
    """``ln value``, with ``ln 0 = -inf`` (where ``math.log`` raises)."""
    return math.log(value) if value > 0 else -math.inf
