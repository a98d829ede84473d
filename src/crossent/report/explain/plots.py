"""The figures of ``crossent explain`` (matplotlib): the loss curves, the target and
the prediction side by side, and a text's loss at each position; written as PNG files by
:func:`write_plots` and drawn inline by :mod:`crossent.report.explain.page`.

matplotlib is imported here (and by the page, which draws these figures), never by the terminal
text.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import ArrayLike, NDArray

from crossent.explain import DistributionExplanation, TextExplanation
from crossent.files import write_bytes_atomically
from crossent.metrics import LN2
from crossent.report.explain.digits import fixed
from crossent.report.figures import new_figure, png_bytes

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from crossent.explain import Explanation, LossCurves

_P_COLOUR = "#2f6db5"
_Q_COLOUR = "#ec663d"
_CURVE_COLOUR = "#1c1c1e"
_ZERO_COLOUR = "#d1393b"
# The loss curve's p axis is logarithmic when a marked probability is below this.
LOG_SCALE_BELOW = 0.01
# Positions whose token texts label the per-position plot's axis, at most.
_MAX_TICK_LABELS = 48


def _to_bits(nats: ArrayLike) -> NDArray[np.float64]:
    return np.asarray(nats, dtype=np.float64) / LN2


def _to_nats(bits: ArrayLike) -> NDArray[np.float64]:
    return np.asarray(bits, dtype=np.float64) * LN2


def loss_curve_figure(
    curves: LossCurves,
    points: Sequence[tuple[float, float, str]] = (),
    *,
    log_p: bool | None = None,
) -> Figure:
    """``-ln p`` against ``p``, the probability given to the true class, in nats and bits.

    A model's tokens often have probabilities of 1e-4 to 1e-8, which on a linear axis all sit on
    top of each other at p = 0; so when a marked point is below :data:`LOG_SCALE_BELOW` the p
    axis is logarithmic (there ``-ln p = ln(1/p)`` is a straight line and each decade of p is as
    wide as the next).

    Args:
        curves: from :func:`crossent.explain.loss_curves`.
        points: ``(p, nats, label)`` to mark on the curve; labelled when there are at most 12.
        log_p: a logarithmic p axis; None (default) for one exactly when a marked p is below
            :data:`LOG_SCALE_BELOW`.
    """
    if log_p is None:
        log_p = any(0 < p < LOG_SCALE_BELOW for p, _, _ in points)
    figure = new_figure(7.0, 4.2)
    axes = figure.add_subplot()
    axes.plot(curves.probability, curves.loss_if_1, color=_CURVE_COLOUR, label="$-\\ln p$")
    axes.axvline(1.0, color=_ZERO_COLOUR, linestyle="--", alpha=0.6, label="p = 1: loss 0")
    if points:
        axes.plot(
            [p for p, _, _ in points],
            [nats for _, nats, _ in points],
            linestyle="none",
            marker="o",
            color=_Q_COLOUR,
            label="this prediction" if len(points) == 1 else "these predictions",
        )
        if len(points) <= 12:
            for p, nats, label in points:
                axes.annotate(
                    _tick_text(label), (p, nats), textcoords="offset points", xytext=(6, 4)
                )
    if log_p:
        axes.set_xscale("log")
        axes.set_xlim(curves.probability[0], 1.5)
    else:
        axes.set_xlim(0, 1.02)
    axes.set_ylim(0, max([curves.loss_if_1[0], *(nats * 1.08 for _, nats, _ in points)]))
    scale = " (log scale)" if log_p else ""
    axes.set_xlabel(f"p, the probability the model gives the true class{scale}")
    axes.set_ylabel("loss, nats")
    axes.secondary_yaxis("right", functions=(_to_bits, _to_nats)).set_ylabel("bits")
    axes.set_title("Cross-entropy against the probability of the true class")
    axes.grid(alpha=0.3)
    axes.legend()
    return figure


def binary_curves_figure(curves: LossCurves) -> Figure:
    """Binary cross-entropy against the predicted probability of class 1, for each true label."""
    figure = new_figure(7.0, 4.2)
    axes = figure.add_subplot()
    axes.plot(
        curves.probability, curves.loss_if_1, color=_P_COLOUR, label="true label 1: $-\\ln p$"
    )
    axes.plot(
        curves.probability,
        curves.loss_if_0,
        color=_Q_COLOUR,
        linestyle="-.",
        label="true label 0: $-\\ln(1 - p)$",
    )
    axes.set_xlabel("p, the predicted probability of class 1")
    axes.set_ylabel("loss, nats")
    axes.set_title("Binary cross-entropy for both true labels")
    axes.set_ylim(0, 7)  # -ln 0.001 = 6.9: the curves' ends, whatever range they were given
    axes.grid(alpha=0.3)
    axes.legend(loc="upper center")
    return figure


def distributions_figure(e: DistributionExplanation) -> Figure:
    """The target ``p`` and the prediction ``q`` side by side, one pair of bars per label."""
    figure = new_figure(max(5.0, min(12.0, 1.0 + 0.8 * len(e.labels))), 3.6)
    axes = figure.add_subplot()
    places = range(len(e.labels))
    width = 0.38
    target = "p, smoothed target" if e.label_smoothing > 0 else "p, target"
    axes.bar([x - width / 2 for x in places], e.smoothed_p, width, color=_P_COLOUR, label=target)
    axes.bar([x + width / 2 for x in places], e.q, width, color=_Q_COLOUR, label="q, prediction")
    axes.set_xticks(list(places), list(e.labels))
    axes.set_ylim(0, 1.05)
    axes.set_ylabel("probability")
    axes.set_title(f"H(p, q) = {fixed(e.nats, 4)} nats = {fixed(e.bits, 4)} bits")
    axes.grid(axis="y", alpha=0.3)
    axes.legend()
    return figure


def _tick_text(text: str) -> str:
    return text.replace("\n", "\\n").replace("\t", "\\t").replace("$", "\\$")


def per_position_figure(e: TextExplanation) -> Figure:
    """Each position's loss ``-ln p(next token)`` as a bar, and their mean, the cross-entropy."""
    count = len(e.tokens)
    figure = new_figure(max(6.0, min(14.0, 1.5 + 0.45 * count)), 4.4)
    axes = figure.add_subplot()
    places = list(range(count))
    axes.bar(places, [token.nats for token in e.tokens], color=_P_COLOUR, label="-ln p(next token)")
    axes.axhline(
        e.nats, color=_ZERO_COLOUR, linestyle="--", label=f"mean = cross-entropy, {e.nats:.4f}"
    )
    every = max(1, math.ceil(count / _MAX_TICK_LABELS))
    axes.set_xticks(
        places[::every],
        [_tick_text(token.text) for token in e.tokens][::every],
        rotation=60,
        ha="right",
    )
    axes.set_xlabel("next token")
    axes.set_ylabel("loss, nats")
    axes.set_title(f"{e.model}: the loss at each position")
    axes.grid(axis="y", alpha=0.3)
    axes.legend()
    return figure


def figures(explanation: Explanation, curves: LossCurves) -> dict[str, Figure]:
    """The explanation's figures by file name (without ``.png``), in the order a page shows them.

    Every explanation has ``loss_curve`` and ``binary_curves``; a distribution also has
    ``distributions`` (first), a text ``per_position`` (first). The loss curve marks the true
    class of a one-hot target, each label with target mass for a distribution, and every token
    of a text.
    """
    drawn: dict[str, Figure] = {}
    points: list[tuple[float, float, str]] = []
    if isinstance(explanation, DistributionExplanation):
        drawn["distributions"] = distributions_figure(explanation)
        points = [
            (q, -log_q, label)
            for label, p, q, log_q in zip(
                explanation.labels, explanation.p, explanation.q, explanation.log_q, strict=True
            )
            if p > 0 and q > 0
        ]
    elif isinstance(explanation, TextExplanation):
        drawn["per_position"] = per_position_figure(explanation)
        points = [(token.probability, token.nats, token.text) for token in explanation.tokens]
    drawn["loss_curve"] = loss_curve_figure(curves, points)
    drawn["binary_curves"] = binary_curves_figure(curves)
    return drawn


def write_plots(
    explanation: Explanation, curves: LossCurves, folder: str | os.PathLike[str]
) -> list[Path]:
    """Write :func:`figures` as PNG files into ``folder`` (created if missing), atomically.

    Returns:
        The paths written.
    """
    directory = Path(folder)
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, figure in figures(explanation, curves).items():
        path = directory / f"{name}.png"
        write_bytes_atomically(path, png_bytes(figure))
        written.append(path)
    return written
