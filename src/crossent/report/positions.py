"""Loss by position in the window (``crossent eval --by-position``): a terminal table, an HTML
table and an inline SVG figure, from :attr:`crossent.evaluation.EvaluationResult.by_position`.

Each row or bar is one power-of-two bucket of context (1, 2-3, 4-7, ... tokens of the window,
:class:`crossent.scoring.PositionMeter`), so the figure's x axis is a log scale of context.
"""

from __future__ import annotations

from collections.abc import Sequence
from html import escape
from typing import TYPE_CHECKING

from crossent.metrics import nats_to_bits
from crossent.report.page import cell
from crossent.report.table import format_table

if TYPE_CHECKING:  # only the types: importing scoring imports torch
    from crossent.scoring import PositionBucket

_WIDTH, _HEIGHT, _PAD = 640, 220, 36


def _label(bucket: PositionBucket) -> str:
    return str(bucket.first) if bucket.first == bucket.last else f"{bucket.first}-{bucket.last}"


def format_positions(buckets: Sequence[PositionBucket]) -> str:
    """The terminal table: context range, tokens, nats and bits per token per bucket."""
    rows = [
        [
            _label(bucket),
            str(bucket.tokens),
            f"{bucket.nats_per_token:.4f}",
            f"{nats_to_bits(bucket.nats_per_token):.4f}",
        ]
        for bucket in buckets
    ]
    table = format_table(["context", "tokens", "nats/token", "bits/token"], rows)
    return "loss by position in the window (tokens of context, power-of-two buckets):\n" + table


def positions_table(buckets: Sequence[PositionBucket]) -> str:
    """The HTML table; cells carry ``data-metric`` (``context``, ``tokens``, ``nats_per_token``)."""
    body = "".join(
        "<tr>"
        + cell(_label(bucket), metric="context")
        + cell(str(bucket.tokens), metric="tokens")
        + cell(f"{bucket.nats_per_token:.4f}", metric="nats_per_token")
        + "</tr>"
        for bucket in buckets
    )
    head = "<tr><th>context, tokens</th><th>tokens</th><th>nats/token</th></tr>"
    return f'<table class="positions"><thead>{head}</thead><tbody>{body}</tbody></table>'


def positions_svg(buckets: Sequence[PositionBucket]) -> str:
    """Mean nats per token by bucket as bars, each with ``data-context`` and ``data-nats``."""
    if not buckets:
        return ""
    top = max(bucket.nats_per_token for bucket in buckets) or 1.0
    step = (_WIDTH - 2 * _PAD) / len(buckets)
    parts = []
    for index, bucket in enumerate(buckets):
        height = (_HEIGHT - 2 * _PAD) * bucket.nats_per_token / top
        x = _PAD + index * step
        y = _HEIGHT - _PAD - height
        label = escape(_label(bucket))
        parts.append(
            f'<rect x="{x + 2:.1f}" y="{y:.1f}" width="{step - 4:.1f}" height="{height:.1f}" '
            f'fill="#4878a8" data-context="{label}" data-nats="{bucket.nats_per_token:.6f}">'
            f"<title>{label} tokens of context: {bucket.nats_per_token:.4f} nats/token over "
            f"{bucket.tokens} tokens</title></rect>"
            f'<text x="{x + step / 2:.1f}" y="{_HEIGHT - _PAD + 14}" font-size="10" '
            f'text-anchor="middle">{label}</text>'
        )
    axis = (
        f'<text x="{_WIDTH / 2}" y="{_HEIGHT - 6}" font-size="11" text-anchor="middle">'
        "tokens of context in the window</text>"
        f'<text x="10" y="{_PAD - 12}" font-size="11">mean nats/token (top: {top:.3f})</text>'
    )
    return (
        f'<svg class="positions" xmlns="http://www.w3.org/2000/svg" width="{_WIDTH}" '
        f'height="{_HEIGHT}" role="img" aria-label="loss by position">{"".join(parts)}{axis}</svg>'
    )
