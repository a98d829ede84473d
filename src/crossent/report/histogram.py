"""The surprisal histogram of the evaluation and comparison pages, as inline SVG.

Bins are 0.5 bits wide from 0, as many as the largest surprisal needs, at most 64; the 64th then
also holds everything from 31.5 bits up. Each bar is coloured by the surprisal class of its lower
edge (:mod:`crossent.report.surprisal`) and carries ``data-count``, ``data-from`` and ``data-to``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

from crossent.metrics import nats_to_bits
from crossent.report.surprisal import bin_index, surprisal_class

if TYPE_CHECKING:  # only the types: importing evaluation imports transformers
    from crossent.evaluation import EvaluationResult, TokenScore

HISTOGRAM_BIN_BITS = 0.5
HISTOGRAM_MAX_BINS = 64


def histogram_bin_count(results: Sequence[EvaluationResult]) -> int:
    """Bins enough for the largest finite surprisal of any of the results, at most the cap."""
    largest = max(
        (
            nats_to_bits(token.nats)
            for result in results
            for token in result.tokens
            if math.isfinite(token.nats)
        ),
        default=0.0,
    )
    return bin_index(largest, HISTOGRAM_BIN_BITS, HISTOGRAM_MAX_BINS) + 1


def histogram_svg(tokens: Sequence[TokenScore], bins: int) -> str:
    """Bars of how many tokens fall in each 0.5-bit surprisal bin; each carries data-count."""
    counts = [0] * bins
    for token in tokens:
        counts[bin_index(nats_to_bits(token.nats), HISTOGRAM_BIN_BITS, bins)] += 1
    open_ended = any(not nats_to_bits(token.nats) < HISTOGRAM_BIN_BITS * bins for token in tokens)
    width, height, left, bottom, top = 720.0, 230.0, 56.0, 40.0, 12.0
    plot_width, plot_height = width - left - 12.0, height - bottom - top
    bar = plot_width / bins
    tallest = max(counts)
    bars = []
    for index, count in enumerate(counts):
        low = index * HISTOGRAM_BIN_BITS
        is_open = open_ended and index == bins - 1
        high = "inf" if is_open else f"{low + HISTOGRAM_BIN_BITS:g}"
        span = f"\u2265 {low:g}" if is_open else f"{low:g}\u2013{high}"
        bar_height = plot_height * count / tallest
        bars.append(
            f'<rect class="{surprisal_class(low)}" '
            f'x="{left + index * bar:.2f}" y="{top + plot_height - bar_height:.2f}" '
            f'width="{max(bar - 1.0, 0.5):.2f}" height="{bar_height:.2f}" '
            f'data-count="{count}" data-from="{low:g}" data-to="{high}">'
            f"<title>{span} bits: {count} tokens</title></rect>"
        )
    step = 1 if bins <= 24 else 2 if bins <= 48 else 4  # x labels every 1, 2 or 4 bits
    ticks = "".join(
        f'<text x="{left + bits * bar / HISTOGRAM_BIN_BITS:.2f}" y="{height - bottom + 14}" '
        f'text-anchor="middle">{bits}</text>'
        for bits in range(0, int(bins * HISTOGRAM_BIN_BITS) + 1, step)
    )
    baseline = top + plot_height
    return (
        f'<svg class="histogram" viewBox="0 0 {width:g} {height:g}" width="{width:g}" '
        f'height="{height:g}" role="img" aria-label="Histogram of surprisal per token, bits">'
        + "".join(bars)
        + f'<line x1="{left}" y1="{baseline}" x2="{width - 12}" y2="{baseline}"/>'
        f'<line x1="{left}" y1="{top}" x2="{left}" y2="{baseline}"/>'
        f'<text x="{left - 6}" y="{top + 4}" text-anchor="end">{tallest}</text>'
        f'<text x="{left - 6}" y="{baseline}" text-anchor="end">0</text>'
        f'<text x="{left - 40}" y="{top + plot_height / 2}" text-anchor="middle" '
        f'transform="rotate(-90 {left - 40} {top + plot_height / 2})">tokens</text>'
        + ticks
        + f'<text x="{left + plot_width / 2}" y="{height - 6}" text-anchor="middle">'
        "surprisal per token, bits (\u2212log\u2082 p)</text></svg>"
    )
