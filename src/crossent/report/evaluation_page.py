"""The HTML page of one evaluation: its numbers, its surprisal histogram, its texts as heatmaps.

The page is self-contained (:mod:`crossent.report.page`); its colours, histogram and heatmaps
follow :mod:`crossent.report.surprisal`, :mod:`crossent.report.histogram` and
:mod:`crossent.report.heatmap`.
"""

from __future__ import annotations

from html import escape
from typing import TYPE_CHECKING

from crossent.report.calibration import calibration_table, reliability_svg, temperature_svg
from crossent.report.heatmap import NO_TOKENS_NOTE, Payload, heatmap_page, score_heatmaps
from crossent.report.histogram import histogram_bin_count, histogram_svg
from crossent.report.page import isolated
from crossent.report.positions import positions_svg, positions_table
from crossent.report.result_tables import (
    convention_table,
    documents_table,
    headline,
    summary_table,
)
from crossent.report.surprisal import surprisal_legend

if TYPE_CHECKING:  # only the types: importing evaluation imports transformers
    from crossent.evaluation import EvaluationResult


def render_evaluation_report(
    result: EvaluationResult, *, title: str | None = None, model_description: str | None = None
) -> str:
    """One self-contained HTML page showing an evaluation (see the module docstring).

    The page holds a summary (the model and what its weights are, convention, window, stride,
    prefix and the totals in every unit, bits per byte as the headline), the convention block
    (:meth:`crossent.evaluation.EvaluationResult.convention_block`), a table with one row per
    document
    (named by it) and, when there are several, the totals as its footer,
    with ``calibration`` its numbers, reliability diagram and loss against temperature
    (:mod:`crossent.report.calibration`), a histogram of per-token surprisal in bits, and each
    document's text as a heatmap in which
    every scored token is a ``<span>`` coloured by its surprisal, with a legend of the colour
    classes and a tooltip per token: its text, probability, surprisal in bits and nats, rank,
    and the model's five most likely tokens with their probabilities.

    Without a prefix token a document's first token is never scored, so its text is not in
    ``result.tokens`` and its heatmap starts at the first scored token (the page says so). When
    ``result.tokens`` is empty the page says that per-token details were not recorded and leaves
    out the histogram and heatmaps.

    Args:
        result: what :func:`crossent.evaluation.evaluate` returned, ideally with per-token
            details.
        title: the page title; default ``"Cross-entropy of <model>"``.
        model_description: what the model's weights are
            (:attr:`crossent.models.CausalLM.description`), shown under the headline and in the
            summary, so that a quantised model's numbers are not taken for the published one's.

    Returns:
        The page, about 80 bytes per token plus the texts' own bytes; write it with
        :func:`crossent.files.write_text_atomically`.
    """
    title = title if title is not None else f"Cross-entropy of {result.model}"
    payload = Payload()
    parts = [
        f"<h1>{escape(title)}</h1>",
        headline([("", result)]),
    ]
    if model_description:
        parts.append(
            f'<p class="model">{isolated(result.model)}: {isolated(model_description)}</p>'
        )
    parts += [
        "<h2>Summary</h2>",
        summary_table(
            [("", result)], descriptions=[model_description] if model_description else None
        ),
        "<h2>How the tokens were scored</h2>",
        convention_table(result),
        "<h2>Documents</h2>",
        documents_table(result),
    ]
    if result.by_position:
        parts += [
            "<h2>Loss by position in the window</h2>",
            positions_svg(result.by_position),
            positions_table(result.by_position),
        ]
    if result.calibration is not None:
        parts += [
            "<h2>Calibration and temperature</h2>",
            calibration_table(result.calibration),
            '<div class="figures">',
            reliability_svg(result.calibration),
            temperature_svg(result.calibration.temperature),
            "</div>",
        ]
    if result.tokens:
        bins = histogram_bin_count([result])
        parts += [
            "<h2>Surprisal per token</h2>",
            histogram_svg(result.tokens, bins),
            "<h2>Texts, coloured by surprisal</h2>",
            surprisal_legend(),
            score_heatmaps(result, "e", payload)[0],
        ]
    else:
        parts.append(NO_TOKENS_NOTE)
    return heatmap_page(title, "\n".join(parts), payload if result.tokens else None)
