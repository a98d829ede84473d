"""How ``crossent explain`` writes its numbers, the same in the terminal, the page and the plots.

Losses on a toy distribution to six decimals (they can be checked by hand); a model's losses to
four decimals, as the textbook's six steps print them, which is the precision its checks hold
to; probabilities to four significant digits. Token texts are shown as JSON strings
(``" effort"``), so leading spaces and line breaks are visible.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from crossent.explain import Check

CHECK_HEADERS = ["computed by", "value", "expected", "|difference|", "tolerance", "agrees"]


def quoted(text: str) -> str:
    """A token text as a JSON string, its spaces and line breaks visible."""
    return json.dumps(text, ensure_ascii=False)


def probability(value: float) -> str:
    """A probability to four significant digits."""
    return f"{value:.4g}"


def fixed(value: float, digits: int) -> str:
    """``value`` to ``digits`` decimals; ``inf`` and ``nan`` as Python writes them."""
    return f"{value:.{digits}f}" if math.isfinite(value) else str(value)


def logits_text(logits: Sequence[float]) -> str:
    """A row of logits as ``[1000, 0, -1000]``."""
    return "[" + ", ".join(f"{value:g}" for value in logits) + "]"


def check_rows(checks: Sequence[Check], digits: int) -> list[list[str]]:
    """One row of texts per check, under :data:`CHECK_HEADERS`; a difference checked against 0
    shows in three significant digits rather than ``digits`` decimals, and a number checked
    against one below 0.01 (a probability such as ``1 / V``) in ``digits`` significant digits."""
    return [
        [
            check.what,
            _checked(check.value, check.expected, digits)
            if check.expected != 0
            else f"{check.value:.3g}",
            _checked(check.expected, check.expected, digits) if check.expected != 0 else "0",
            f"{check.difference:.2g}",
            f"{check.tolerance:.2g}",
            "yes" if check.agrees else "NO",
        ]
        for check in checks
    ]


def _checked(value: float, expected: float, digits: int) -> str:
    """``value`` to ``digits`` decimals, or significant digits when ``|expected| < 0.01``."""
    return f"{value:.{digits}g}" if abs(expected) < 0.01 else fixed(value, digits)
