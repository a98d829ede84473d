"""The HTML tables of an evaluation's numbers, shown by the evaluation and the comparison page.

Every number is written as on the terminal (:mod:`crossent.report.numbers`), and every cell
carries ``data-metric`` (the :class:`crossent.metrics.NLLResult` field it shows) and, in a table
of several models, ``data-model``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from html import escape
from typing import TYPE_CHECKING

from crossent.metrics import NLLResult
from crossent.report.numbers import METRIC_DIGITS, METRIC_ERRORS, METRIC_FORMATS, with_error
from crossent.report.page import cell, name_title, short_name

if TYPE_CHECKING:  # only the types: importing evaluation imports transformers
    from crossent.evaluation import EvaluationResult

# The header each metric of METRIC_FORMATS has in the pages.
_HEADERS = {
    "tokens": "tokens",
    "nats_per_token": "nats/token",
    "bits_per_token": "bits/token",
    "perplexity": "perplexity",
    "bytes": "bytes",
    "bits_per_byte": "bits/byte",
    "byte_perplexity": "byte perplexity",
    "words": "words",
    "word_perplexity": "word perplexity",
    "accuracy": "top-1 accuracy",
}


def headline(named: Sequence[tuple[str, EvaluationResult]]) -> str:
    """Each result's bits per byte ± its standard error per token, large, with its name when
    it has one."""
    parts = [
        f"<b>{escape(with_error(result.totals.bits_per_byte, result.totals.bits_per_byte_se, 4))}"
        "</b> bits per byte" + (f" ({name})" if name else "")
        for name, result in named
    ]
    return f'<p class="headline">{" &nbsp; ".join(parts)}</p>'


def summary_table(
    named: Sequence[tuple[str, EvaluationResult]],
    *,
    descriptions: Sequence[str | None] | None = None,
) -> str:
    """One column per result; cells carry data-metric (and data-model when named).

    ``descriptions``, one per result, says what each model's weights are
    (:attr:`crossent.models.CausalLM.description`); given, it is the row ``weights``
    (``data-metric="model_description"``) under the model's name.
    """
    settings: list[tuple[str, str, Callable[[EvaluationResult], str]]] = [
        ("model", "model", lambda r: r.model),
        ("convention", "convention", lambda r: r.convention),
        ("window", "window", lambda r: str(r.window)),
        ("stride", "stride", lambda r: str(r.stride)),
        ("prefix", "prefix", lambda r: r.prefix),
        ("documents", "documents", lambda r: str(len(r.documents))),
    ]
    rows = [
        f"<tr><th>{escape(header)}</th>"
        + "".join(cell(show(result), metric=key, model=name) for name, result in named)
        + "</tr>"
        for key, header, show in settings
    ]
    if descriptions is not None:
        cells = "".join(
            cell(description or "", metric="model_description", model=name)
            for (name, _), description in zip(named, descriptions, strict=True)
        )
        rows.insert(1, f"<tr><th>weights</th>{cells}</tr>")
    rows += [
        f"<tr><th>{escape(_HEADERS[key])}</th>"
        + "".join(cell(show(result.totals), metric=key, model=name) for name, result in named)
        + "</tr>"
        for key, show in METRIC_FORMATS.items()
    ]
    rows += _uncertainty_rows(named)
    head = "".join(f"<th>{escape(name)}</th>" for name, _ in named) if len(named) > 1 else ""
    head_row = f"<thead><tr><th></th>{head}</tr></thead>" if head else ""
    return f'<table class="summary">{head_row}<tbody>{"".join(rows)}</tbody></table>'


def _uncertainty_rows(named: Sequence[tuple[str, EvaluationResult]]) -> list[str]:
    """One standard error per token of each metric that has one, then the bootstrap's over
    documents (and its 95% interval) where some result has several documents."""
    rows = []
    for key, error in METRIC_ERRORS.items():
        digits = METRIC_DIGITS[key]
        rows.append(
            f"<tr><th>\u00b1 {escape(_HEADERS[key])} (standard error over tokens)</th>"
            + "".join(
                cell(with_error(getattr(r.totals, error), None, digits), metric=error, model=name)
                for name, r in named
            )
            + "</tr>"
        )
    if all(result.bootstrap is None for _, result in named):
        return rows

    def boot(result: EvaluationResult, what: str) -> str:
        estimate = None if result.bootstrap is None else result.bootstrap.bits_per_byte
        if estimate is None:
            return "-"
        if what == "se":
            return f"{estimate.standard_error:.4f}"
        return f"{estimate.low:.4f} to {estimate.high:.4f}"

    for what, header in (
        ("se", "\u00b1 bits/byte over documents (bootstrap)"),
        ("interval", "bits/byte, 95% interval over documents"),
    ):
        rows.append(
            f"<tr><th>{escape(header)}</th>"
            + "".join(
                cell(boot(r, what), metric=f"bootstrap_bits_per_byte_{what}", model=name)
                for name, r in named
            )
            + "</tr>"
        )
    settings = next(r.bootstrap for _, r in named if r.bootstrap is not None)
    rows.append(
        f'<tr><th>bootstrap</th><td colspan="{len(named)}">{settings.resamples} resamples of '
        f"the documents, seed {settings.seed}</td></tr>"
    )
    return rows


def documents_table(result: EvaluationResult) -> str:
    """One row per document, named by it; the totals as the footer when there are several."""

    def row(name: str, metrics: NLLResult) -> str:
        cells = "".join(cell(show(metrics), metric=key) for key, show in METRIC_FORMATS.items())
        return f"<tr><td{name_title(name)}>{escape(short_name(name))}</td>{cells}</tr>"

    head = "".join(f"<th>{escape(_HEADERS[key])}</th>" for key in METRIC_FORMATS)
    body = "".join(row(document.name, document.result()) for document in result.documents)
    foot = f"<tfoot>{row('total', result.totals)}</tfoot>" if len(result.documents) > 1 else ""
    return (
        f'<table class="documents"><thead><tr><th>document</th>{head}</tr></thead>'
        f"<tbody>{body}</tbody>{foot}</table>"
    )


# The rows of the convention table: the key in EvaluationResult.convention_block, its header.
_CONVENTION_ROWS = {
    "name": "convention",
    "rules": "rules",
    "prefix": "prefix",
    "window": "window",
    "stride": "stride",
    "windows": "forward passes",
    "tokens_scored": "tokens scored",
    "tokens_unscored": "tokens left unscored",
    "tokens_counted": "tokens the totals count",
    "scored_chunk_positions": "scored positions of each chunk",
    "perplexity": "perplexity",
    "perplexity_uncertainty": "perplexity +/- (llama.cpp's)",
}


def convention_table(result: EvaluationResult) -> str:
    """How the tokens were chosen for scoring (:meth:`EvaluationResult.convention_block`), one
    row per entry, each cell with ``data-metric="convention.KEY"``."""
    block = result.convention_block()
    rows = []
    for key, header in _CONVENTION_ROWS.items():
        if key not in block:
            continue
        value = block[key]
        if isinstance(value, list):
            shown = "-".join(str(item) for item in value)
        elif isinstance(value, float):
            shown = f"{value:.5g}"
        else:
            shown = "-" if value is None else str(value)
        rows.append(f"<tr><th>{escape(header)}</th>{cell(shown, metric=f'convention.{key}')}</tr>")
    return f'<table class="convention"><tbody>{"".join(rows)}</tbody></table>'
