"""The colour scales of the evaluation and comparison pages: surprisal, and its change.

* **Surprisal** is ``-log2 p(token)``, in bits, computed from each token's nats by
  :func:`crossent.metrics.nats_to_bits`; tooltips show bits and nats.
* **Heatmap colours** bin a token's surprisal into eight classes of 2 bits: [0, 2), [2, 4), ...,
  [12, 14) and 14 bits or more (p below 2 ** -14, and an infinite surprisal). The scale is fixed,
  so colours mean the same in every report.
* **Changes** (B's loss minus A's, in nats, as every per-token number of a comparison is; see
  :mod:`crossent.comparison`) are binned at -5, -3, -1.5, -0.5, 0.5, 1.5, 3 and 5 nats on a
  diverging scale: blue where B is more confident.

Each class is a CSS class (``c0`` to ``c7``, ``d0`` to ``d8``) whose rules :data:`COLOUR_STYLE`
holds, so a heatmap's span, a legend's swatch and a histogram's bar share one colour.
"""

from __future__ import annotations

import bisect
import itertools

from crossent.metrics import nats_to_bits

# Surprisal colour classes: light (likely) to dark red (surprising), one per 2 bits.
SURPRISAL_CLASS_BITS = 2.0
_SURPRISAL_COLOURS = (
    "#fbfaf2", "#fdf0bd", "#fddd88", "#fdbd63", "#f8964b", "#ec663d", "#d1393b", "#9b1a40",
)  # fmt: skip
# Difference classes, by B's loss minus A's in nats: blue where B is more confident.
DIFFERENCE_EDGES_NATS = (-5.0, -3.0, -1.5, -0.5, 0.5, 1.5, 3.0, 5.0)
_DIFFERENCE_COLOURS = (
    "#24518f", "#4a80c0", "#8db3dd", "#cfe0f1", "#f4f4f4", "#f5d2c6", "#e99781", "#cf5646",
    "#9c2129",
)  # fmt: skip
_DARK_CLASSES = ("c6", "c7", "d0", "d1", "d8")  # white text, for contrast

# The class rules; an SVG shape takes the colour as its fill, a span as its background.
COLOUR_STYLE = (
    "".join(
        f".c{index}{{background:{colour};fill:{colour}}}"
        for index, colour in enumerate(_SURPRISAL_COLOURS)
    )
    + "".join(
        f".d{index}{{background:{colour};fill:{colour}}}"
        for index, colour in enumerate(_DIFFERENCE_COLOURS)
    )
    + ",".join(f".{name}" for name in _DARK_CLASSES)
    + "{color:#fff}"
)


def bin_index(value: float, width: float, count: int) -> int:
    """The index of ``value``'s bin of ``width`` from 0; the first and last bins are open-ended.

    Anything at or above ``width * count`` (infinity and NaN included) lands in the last bin, and
    a value below 0 (float noise in a loss) in the first.

    Example:
        >>> bin_index(3.0, 2.0, 8), bin_index(float("inf"), 2.0, 8), bin_index(-1e-9, 2.0, 8)
        (1, 7, 0)
    """
    if not value < width * count:
        return count - 1
    return max(int(value // width), 0)


def surprisal_class(bits: float) -> str:
    """The CSS class of a surprisal of ``bits``."""
    return f"c{bin_index(bits, SURPRISAL_CLASS_BITS, len(_SURPRISAL_COLOURS))}"


def token_class(nats: float) -> str:
    """The CSS class of a token of loss ``nats``, by its surprisal in bits."""
    return surprisal_class(nats_to_bits(nats))


def difference_class(nats_a: float, nats_b: float) -> str:
    """The CSS class of a token's change in loss from ``nats_a`` (model A) to ``nats_b``."""
    return f"d{bisect.bisect_right(DIFFERENCE_EDGES_NATS, nats_b - nats_a)}"


def surprisal_legend() -> str:
    """The surprisal classes as labelled swatches, and how to reach a token's numbers."""
    last = len(_SURPRISAL_COLOURS) - 1
    labels = [
        f"{index * SURPRISAL_CLASS_BITS:g}\u2013{(index + 1) * SURPRISAL_CLASS_BITS:g}"
        for index in range(last)
    ] + [f"\u2265 {last * SURPRISAL_CLASS_BITS:g}"]
    swatches = "".join(
        f'<span class="c{index}">{label}</span>' for index, label in enumerate(labels)
    )
    return (
        '<p class="legend">Surprisal, bits (p = 2<sup>\u2212bits</sup>): '
        f'{swatches}</p><p class="note">Hover over a token for its numbers, click to pin, or '
        "focus a text with Tab and move with the arrow keys.</p>"
    )


def difference_legend() -> str:
    """The difference classes as labelled swatches."""
    edges = [f"{edge:g}" for edge in DIFFERENCE_EDGES_NATS]
    labels = [f"< {edges[0]}"]
    labels += [f"{low}\u2013{high}" for low, high in itertools.pairwise(edges)]
    labels += [f"\u2265 {edges[-1]}"]
    swatches = "".join(
        f'<span class="d{index}">{label}</span>' for index, label in enumerate(labels)
    )
    return (
        '<p class="legend">Change in loss \u2212ln p, B \u2212 A, nats (blue: B more confident): '
        f"{swatches}</p>"
    )
