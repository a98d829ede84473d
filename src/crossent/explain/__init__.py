"""Cross-entropy shown with real numbers: on toy distributions, on a model reading a text, at the
edge of floating point.

Three explanations, each a function that returns a frozen dataclass of plain numbers, which
:mod:`crossent.report.explain` turns into a terminal table, JSON, plots and an HTML page:

* :func:`explain_distributions` (:mod:`~crossent.explain.distributions`): a predicted
  distribution ``q`` over a few labels and a target, either one label (a one-hot ``p``) or a
  distribution ``p``, optionally label-smoothed. Every term ``-p_i ln q_i`` of
  ``H(p, q) = -sum_i p_i ln q_i``, the total in nats and bits, the perplexity, the entropy
  ``H(p)`` and ``KL(p || q)``, and the identity ``H(p, q) = H(p) + KL(p || q)``.
* :func:`explain_text` (:mod:`~crossent.explain.text`): a causal language model scoring a text,
  in the textbook's six steps (:func:`crossent.reference.six_steps`): logits, softmax, the target
  tokens' probabilities, their logs, the mean, its negation; then per position the true next
  token, its rank and the most likely alternatives.
* :func:`explain_stability` (:mod:`~crossent.explain.stability`): the naive
  ``-log(softmax(z) + 1e-10)`` against the log-space loss on extreme logits, beside the exact
  value, for the loss and for its gradient.

:func:`explain` (:mod:`~crossent.explain.request`) picks one of them from the options of
``crossent explain``; :func:`loss_curves` (:mod:`~crossent.explain.curves`) gives the curves
their figures draw.

A toy distribution and a text can also be shown at several temperatures, the logits divided by
``T`` (the ``temperatures`` argument, a :class:`TemperatureScan` of :class:`TemperatureRow`;
:mod:`~crossent.explain.temperature`, :mod:`~crossent.explain.temperature_text`): the prediction,
the target's probability, the loss, the entropy and the perplexity at each ``T``.

Each explanation computes its headline numbers with crossent's own functions and keeps
:class:`Check` records (:mod:`~crossent.explain.checks`) comparing them with independent
computations (PyTorch, plain Python ``math`` in float64); every record must agree within its
tolerance, which the tests and the ``crossent explain`` command verify.

Units: every loss, entropy and divergence is in nats (natural log); bits are nats / ln 2, and
perplexity is ``e ** nats`` (= ``2 ** bits``), as in :mod:`crossent.metrics`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from crossent.lazy import lazy_attributes

# Imported on first use: the request (what the command line checks) needs no PyTorch.
if TYPE_CHECKING:
    from crossent.explain.checks import PRINTED_TOLERANCE, Check
    from crossent.explain.curves import LossCurves, loss_curves, loss_curves_for
    from crossent.explain.distributions import (
        SUM_TOLERANCE,
        DistributionExplanation,
        explain_distributions,
    )
    from crossent.explain.request import ExplainRequest, Explanation, explain
    from crossent.explain.stability import (
        DEFAULT_STABILITY_CASES,
        NAIVE_EPSILON,
        StabilityCase,
        StabilityExplanation,
        StabilityRow,
        explain_stability,
    )
    from crossent.explain.temperature import TemperatureRow, TemperatureScan
    from crossent.explain.text import (
        MAX_TEXT_TOKENS,
        TextExplanation,
        TokenStep,
        check_text,
        explain_text,
    )

_HOME = {
    "Check": "crossent.explain.checks",
    "DEFAULT_STABILITY_CASES": "crossent.explain.stability",
    "DistributionExplanation": "crossent.explain.distributions",
    "ExplainRequest": "crossent.explain.request",
    "Explanation": "crossent.explain.request",
    "LossCurves": "crossent.explain.curves",
    "MAX_TEXT_TOKENS": "crossent.explain.text",
    "NAIVE_EPSILON": "crossent.explain.stability",
    "PRINTED_TOLERANCE": "crossent.explain.checks",
    "SUM_TOLERANCE": "crossent.explain.distributions",
    "StabilityCase": "crossent.explain.stability",
    "StabilityExplanation": "crossent.explain.stability",
    "StabilityRow": "crossent.explain.stability",
    "TemperatureRow": "crossent.explain.temperature",
    "TemperatureScan": "crossent.explain.temperature",
    "TextExplanation": "crossent.explain.text",
    "TokenStep": "crossent.explain.text",
    "check_text": "crossent.explain.text",
    "explain": "crossent.explain.request",
    "explain_distributions": "crossent.explain.distributions",
    "explain_stability": "crossent.explain.stability",
    "explain_text": "crossent.explain.text",
    "loss_curves": "crossent.explain.curves",
    "loss_curves_for": "crossent.explain.curves",
}

__all__ = [
    "DEFAULT_STABILITY_CASES",
    "MAX_TEXT_TOKENS",
    "NAIVE_EPSILON",
    "PRINTED_TOLERANCE",
    "SUM_TOLERANCE",
    "Check",
    "DistributionExplanation",
    "ExplainRequest",
    "Explanation",
    "LossCurves",
    "StabilityCase",
    "StabilityExplanation",
    "StabilityRow",
    "TemperatureRow",
    "TemperatureScan",
    "TextExplanation",
    "TokenStep",
    "check_text",
    "explain",
    "explain_distributions",
    "explain_stability",
    "explain_text",
    "loss_curves",
    "loss_curves_for",
]

__getattr__ = lazy_attributes(__name__, _HOME)
