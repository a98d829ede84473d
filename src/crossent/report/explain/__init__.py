"""How ``crossent explain`` shows its numbers: terminal text, plots and one HTML page.

Presentation only: every number comes from :mod:`crossent.explain`. The three explanations
(:class:`~crossent.explain.DistributionExplanation`, :class:`~crossent.explain.TextExplanation`,
:class:`~crossent.explain.StabilityExplanation`) each have

* a terminal text, :func:`format_explanation` (:mod:`~crossent.report.explain.text`);
* a set of figures, :func:`figures`, written as PNG files by :func:`write_plots`
  (:mod:`~crossent.report.explain.plots`);
* a page, :func:`render_explanation_page` (:mod:`~crossent.report.explain.page`), which draws the
  figures inline;

all writing numbers as :mod:`~crossent.report.explain.digits` says.

The figures and the page need matplotlib (the ``report`` extra); the terminal text does not, so
the names are imported on first use and ``crossent explain`` prints its text without matplotlib.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from crossent.lazy import lazy_attributes

if TYPE_CHECKING:
    from crossent.report.explain.page import render_explanation_page
    from crossent.report.explain.plots import (
        binary_curves_figure,
        distributions_figure,
        figures,
        loss_curve_figure,
        per_position_figure,
        write_plots,
    )
    from crossent.report.explain.text import format_explanation

# Where each public name lives.
_PUBLIC = {
    "format_explanation": "crossent.report.explain.text",
    "binary_curves_figure": "crossent.report.explain.plots",
    "distributions_figure": "crossent.report.explain.plots",
    "figures": "crossent.report.explain.plots",
    "loss_curve_figure": "crossent.report.explain.plots",
    "per_position_figure": "crossent.report.explain.plots",
    "write_plots": "crossent.report.explain.plots",
    "render_explanation_page": "crossent.report.explain.page",
}

__all__ = [
    "binary_curves_figure",
    "distributions_figure",
    "figures",
    "format_explanation",
    "loss_curve_figure",
    "per_position_figure",
    "render_explanation_page",
    "write_plots",
]


__getattr__ = lazy_attributes(__name__, _PUBLIC)


def __dir__() -> list[str]:
    return __all__
