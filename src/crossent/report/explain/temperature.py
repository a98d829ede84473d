"""How ``crossent explain --temperature`` shows its scan: one table with a row per temperature, in
the terminal and on the page, and the scan's checks.

Presentation only: every number comes from :class:`crossent.explain.TemperatureScan`. A toy
distribution's rows show ``q_T`` label by label, to six decimals; a text's rows its means over
the positions, to four, as the rest of each explanation writes them
(:mod:`crossent.report.explain.digits`).
"""

from __future__ import annotations

from html import escape

from crossent.explain import (
    DistributionExplanation,
    TemperatureRow,
    TemperatureScan,
    TextExplanation,
)
from crossent.report.explain.digits import CHECK_HEADERS, check_rows, fixed
from crossent.report.page import cell
from crossent.report.table import format_table

# What "loss - entropy" means, in the terminal and on the page.
_EXCESS = (
    "loss - entropy above 0: the prediction is surer than its loss warrants (over-confident); "
    "below 0: less sure than it could be (under-confident). H(q_T) is the loss the prediction "
    "expects of itself: the mean loss if the answers were drawn from q_T."
)


def _table(
    explanation: DistributionExplanation | TextExplanation, scan: TemperatureScan
) -> tuple[list[str], list[str], list[list[str]]]:
    """The headers, the ``data-metric`` key of each column and the rows of texts."""
    if isinstance(explanation, DistributionExplanation):
        labels = explanation.labels
        target = "" if explanation.target is None else explanation.target
        columns = [f"q({label})" + (" target" if label == target else "") for label in labels]
        headers = ["T", *columns, "H(p, q_T), nats", "bits", "perplexity", "H(q_T), nats",
                   "loss - entropy"]  # fmt: skip
        keys = ["temperature", *(f"q.{index}" for index in range(len(labels))),
                "nats", "bits", "perplexity", "entropy_nats", "excess_nats"]  # fmt: skip
        return headers, keys, [_toy_row(numbers) for numbers in scan.rows]
    headers = ["T", "mean loss, nats", "bits/token", "perplexity", "mean entropy, nats",
               "loss - entropy", "mean p(target)"]  # fmt: skip
    keys = ["temperature", "nats", "bits", "perplexity", "entropy_nats", "excess_nats",
            "target_probability"]  # fmt: skip
    return headers, keys, [_text_row(numbers) for numbers in scan.rows]


def _toy_row(numbers: TemperatureRow) -> list[str]:
    q = numbers.q or ()
    return [
        f"{numbers.temperature:g}",
        *(f"{value:.6g}" for value in q),
        fixed(numbers.nats, 6),
        fixed(numbers.bits, 6),
        fixed(numbers.perplexity, 6),
        fixed(numbers.entropy_nats, 6),
        fixed(numbers.excess_nats, 6),
    ]


def _text_row(numbers: TemperatureRow) -> list[str]:
    probability = numbers.target_probability
    return [
        f"{numbers.temperature:g}",
        fixed(numbers.nats, 4),
        fixed(numbers.bits, 4),
        f"{numbers.perplexity:.6g}",
        fixed(numbers.entropy_nats, 4),
        fixed(numbers.excess_nats, 4),
        "" if probability is None else f"{probability:.4g}",
    ]


def _introduction(explanation: DistributionExplanation | TextExplanation) -> list[str]:
    if isinstance(explanation, TextExplanation):
        return [
            "At temperature T the logits are divided by T before the softmax, at every position: "
            "T < 1 sharpens each prediction, T > 1 flattens it (T -> inf: uniform over the "
            f"{explanation.logits_shape[-1]} tokens, loss and entropy ln V).",
        ]
    given = "z" if explanation.logits is not None else "z = ln q, so q_T is q^(1/T) normalised"
    return [
        f"At temperature T the logits are divided by T: q_T = softmax(z / T), with {given}. "
        "T < 1 sharpens q towards its most likely label (T -> 0: all on it), T > 1 flattens it "
        f"(T -> inf: uniform over the labels, entropy ln {len(explanation.labels)}).",
    ]


def temperature_lines(
    explanation: DistributionExplanation | TextExplanation, digits: int
) -> list[str]:
    """The scan in the terminal: its table, what its last column means, and its checks; nothing
    without a scan."""
    scan = explanation.temperatures
    if scan is None:
        return []
    headers, _, rows = _table(explanation, scan)
    return [
        "",
        *_introduction(explanation),
        "",
        format_table(headers, rows),
        "",
        _EXCESS,
        "",
        "Temperature checks:",
        format_table(CHECK_HEADERS, check_rows(scan.checks, digits)),
    ]


def temperature_html(explanation: DistributionExplanation | TextExplanation) -> list[str]:
    """The scan's heading, introduction and table on the page (its checks are the page's to
    draw); nothing without a scan. Cells carry ``data-metric`` keys named after
    :meth:`crossent.explain.TemperatureRow.to_dict`'s (``q.0``, ``q.1``, ... for ``q_T``)."""
    scan = explanation.temperatures
    if scan is None:
        return []
    headers, keys, rows = _table(explanation, scan)
    head = "".join(f"<th>{escape(header)}</th>" for header in headers)
    body = "".join(
        "<tr>"
        + "".join(cell(text, metric=key) for text, key in zip(texts, keys, strict=True))
        + "</tr>"
        for texts in rows
    )
    return [
        "<h2>Temperature</h2>",
        *(f"<p>{escape(line)}</p>" for line in _introduction(explanation)),
        f'<table class="temperature"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>',
        f"<p>{escape(_EXCESS)}</p>",
    ]
