"""The loss curve of ``crossent explain``: a text's tokens, whose probabilities span decades,
are spread over a logarithmic p axis instead of crowding at p = 0 (issue 11, item 16)."""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import NDArray

from crossent.explain import (
    Explanation,
    TextExplanation,
    TokenStep,
    explain_distributions,
    loss_curves_for,
)
from crossent.metrics import nats_to_bits, perplexity
from crossent.report.explain import figures

# The probabilities SmolLM2 gives "Every effort moves you": 2.3e-6, 3.1e-4, 7.7e-8, 0.017.
PROBABILITIES = [2.286e-06, 3.117e-04, 7.699e-08, 1.692e-02]


def _text() -> TextExplanation:
    tokens = tuple(
        TokenStep(index, 100 + index, f"t{index}", p, math.log(p), 1, (7,), ("x",), (0.5,))
        for index, p in enumerate(PROBABILITIES)
    )
    nats = -sum(math.log(p) for p in PROBABILITIES) / len(PROBABILITIES)
    return TextExplanation(
        model="m", text="t0t1t2t3", prefix="bos", input_ids=(1, 100, 101, 102),
        input_texts=("<s>", "t0", "t1", "t2"), logits_shape=(1, 4, 50), logits_dtype="float32",
        probability_sum_error=0.0, tokens=tokens, mean_log_probability=-nats, nats=nats,
        bits=nats_to_bits(nats), perplexity=perplexity(nats), checks=(),
    )  # fmt: skip


def _marked_points(explanation: Explanation) -> tuple[str, NDArray[np.float64]]:
    """The loss curve's x scale and its marked points' x positions as fractions of the axis."""
    figure = figures(explanation, loss_curves_for(explanation))["loss_curve"]
    axes = figure.axes[0]
    (marks,) = [line for line in axes.get_lines() if line.get_marker() == "o"]
    xy = np.column_stack([marks.get_xdata(), marks.get_ydata()]).astype(np.float64)
    fractions = axes.transAxes.inverted().transform(axes.transData.transform(xy))[:, 0]
    return str(axes.get_xscale()), fractions


def test_a_texts_tokens_are_spread_over_a_log_p_axis() -> None:
    scale, fractions = _marked_points(_text())
    assert scale == "log"
    # The marks sit where log10 p puts them: the same spacing as the decades between them.
    assert np.all((fractions > 0) & (fractions < 1))
    gaps = np.diff(np.sort(fractions))
    assert gaps.min() > 0.05, fractions  # on a linear axis three of them are within 0.0003
    logs = np.log10(PROBABILITIES)
    expected = (logs - logs.min()) / (logs.max() - logs.min())
    spread = np.sort(fractions)
    assert np.allclose((spread - spread[0]) / (spread[-1] - spread[0]), np.sort(expected))


def test_the_three_animals_keep_a_linear_axis() -> None:
    cat = explain_distributions([0.2, 0.7, 0.1], labels=["dog", "cat", "fish"], target="cat")
    scale, fractions = _marked_points(cat)
    assert scale == "linear"
    assert abs(fractions[0] - 0.7 / 1.02) < 1e-9
