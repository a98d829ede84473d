"""The HTML reports of an evaluation and of a comparison, and the page shell, by their old names.

Each now lives in a module of its own: :mod:`crossent.report.page` (the self-contained shell,
:func:`page`, :data:`BASE_STYLE`, :func:`cell`), :mod:`crossent.report.evaluation_page` and
:mod:`crossent.report.comparison_page`; what the two pages share is in
:mod:`crossent.report.surprisal` (colour classes), :mod:`crossent.report.histogram`,
:mod:`crossent.report.heatmap` (heatmaps, tooltips, the page's script) and
:mod:`crossent.report.result_tables`.
"""

from __future__ import annotations

from crossent.report.comparison_page import render_comparison_report
from crossent.report.evaluation_page import render_evaluation_report
from crossent.report.page import BASE_STYLE, cell, page

__all__ = ["BASE_STYLE", "cell", "page", "render_comparison_report", "render_evaluation_report"]
