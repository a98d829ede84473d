"""How crossent writes an evaluation's numbers, the same on the terminal and in the pages.

Each metric of a :class:`crossent.metrics.NLLResult` has one format, kept here: counts as
integers, nats and bits per token and accuracy to four decimals, perplexity and word perplexity to
three, bits per byte and byte perplexity to four; a metric that could not be computed (no bytes or
no words counted) is written ``-``. A standard error follows its number after ``±``, to the same
decimals (:func:`with_error`).
"""

from __future__ import annotations

from collections.abc import Callable

from crossent.metrics import NLLResult


def optional(value: float | None, digits: int) -> str:
    """``value`` to ``digits`` decimals, or ``-`` when there is none.

    Example:
        >>> optional(0.123456, 4), optional(None, 4)
        ('0.1235', '-')
    """
    return "-" if value is None else f"{value:.{digits}f}"


# Keyed by the NLLResult field each shows, in the order the tables list them.
METRIC_FORMATS: dict[str, Callable[[NLLResult], str]] = {
    "tokens": lambda m: str(m.tokens),
    "nats_per_token": lambda m: f"{m.nats_per_token:.4f}",
    "bits_per_token": lambda m: f"{m.bits_per_token:.4f}",
    "perplexity": lambda m: f"{m.perplexity:.3f}",
    "bytes": lambda m: str(m.bytes),
    "bits_per_byte": lambda m: optional(m.bits_per_byte, 4),
    "byte_perplexity": lambda m: optional(m.byte_perplexity, 4),
    "words": lambda m: str(m.words),
    "word_perplexity": lambda m: optional(m.word_perplexity, 3),
    "accuracy": lambda m: f"{m.accuracy:.4f}",
}


def format_metrics(metrics: NLLResult) -> dict[str, str]:
    """Every metric of ``metrics`` as text, keyed and ordered as :data:`METRIC_FORMATS`."""
    return {key: show(metrics) for key, show in METRIC_FORMATS.items()}


def with_error(value: float | None, error: float | None, digits: int) -> str:
    """``value ± error`` to ``digits`` decimals (± is one standard error); the value alone
    without an error, ``-`` without a value.

    Example:
        >>> with_error(0.88223, 0.00312, 4), with_error(0.88223, None, 4)
        ('0.8822 ± 0.0031', '0.8822')
    """
    if value is None:
        return "-"
    return f"{value:.{digits}f}" + ("" if error is None else f" \u00b1 {error:.{digits}f}")


# The metrics that carry a standard error, each with the NLLResult field holding it.
METRIC_ERRORS: dict[str, str] = {
    "nats_per_token": "nats_per_token_se",
    "bits_per_token": "bits_per_token_se",
    "perplexity": "perplexity_se",
    "bits_per_byte": "bits_per_byte_se",
}
METRIC_DIGITS = {"nats_per_token": 4, "bits_per_token": 4, "perplexity": 3, "bits_per_byte": 4}


def format_metrics_with_errors(metrics: NLLResult) -> dict[str, str]:
    """As :func:`format_metrics`, with ``± standard error`` after each metric that has one."""
    cells = format_metrics(metrics)
    for key, error in METRIC_ERRORS.items():
        cells[key] = with_error(getattr(metrics, key), getattr(metrics, error), METRIC_DIGITS[key])
    return cells
