"""The :class:`Check` record: one number computed by crossent and again by an independent route.

Every explanation keeps its checks beside its numbers; ``crossent explain`` fails when one of them
disagrees. How large a difference a check accepts is the explanation's choice: a few float64
roundings for two exact formulas, :mod:`crossent.tolerance`'s rule for a number computed in the
model's dtype.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

# Two float64 computations of one number by different formulas agree to about this, relatively.
FLOAT64_TOLERANCE = 1e-9
# A model's losses are printed to four decimals, as the textbook's six steps print them; PyTorch's
# loss in the model's dtype must agree with the float64 truth to within half a unit of the last
# printed digit.
PRINTED_TOLERANCE = 5e-5


@dataclass(frozen=True)
class Check:
    """One number computed two ways: by crossent and by an independent route.

    Attributes:
        what: the independent route, e.g. ``"torch.nn.functional.cross_entropy"``.
        value: what that route gives.
        expected: what crossent gives (the number the explanation reports).
        tolerance: the largest difference accepted.
    """

    what: str
    value: float
    expected: float
    tolerance: float

    @property
    def difference(self) -> float:
        """``|value - expected|``; 0 when both are the same infinity."""
        if self.value == self.expected:
            return 0.0
        return abs(self.value - self.expected)

    @property
    def agrees(self) -> bool:
        """Whether the two are within the tolerance (NaN never agrees)."""
        return self.difference <= self.tolerance

    def to_dict(self) -> dict[str, Any]:
        """The fields, the difference and the verdict under stable keys (for JSON)."""
        return {**asdict(self), "difference": self.difference, "agrees": self.agrees}


def relative_tolerance(tolerance: float, value: float) -> float:
    """``tolerance`` relative to ``|value|`` (absolute below 1); 0 for an infinite ``value``,
    which only the same infinity matches."""
    return tolerance * max(1.0, abs(value)) if math.isfinite(value) else 0.0
