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


def cross_term(p: float, log_q: float) -> float:
    """``-p ln q``, with ``0 ln 0 = 0``: a class the target gives no mass costs nothing."""
    return 0.0 if p == 0 else -p * log_q


def temperatures_shown(temperatures: Sequence[float]) -> tuple[float, ...]:
    """The temperatures a scan shows: those given and 1 (the plain prediction), increasing, each
    once.

    Raises:
        ValueError: a temperature that is not a finite number above 0.

    Example:
        >>> temperatures_shown([2, 0.5, 2])
        (0.5, 1.0, 2.0)
    """
    for value in temperatures:
        if not (math.isfinite(value) and value > 0):
            raise ValueError(f"a temperature must be a finite number > 0, got {value}")
    return tuple(sorted({1.0, *(float(value) for value in temperatures)}))


def exp_or_inf(value: float) -> float:
    """``e ** value`` by Python's ``math``, ``inf`` where that overflows."""
    try:
        return math.exp(value)
    except OverflowError:
        return math.inf
