"""The curves of the loss figures: the binary cross-entropy against the predicted probability,
for either true label, computed by crossent and checked against Python's ``math``."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from crossent.explain.checks import Check
from crossent.explain.distributions import DistributionExplanation
from crossent.explain.stability import StabilityExplanation
from crossent.explain.text import TextExplanation
from crossent.losses.binary import binary_cross_entropy


@dataclass(frozen=True)
class LossCurves:
    """The binary cross-entropy against the predicted probability of class 1, in nats.

    Attributes:
        probability: the predicted probabilities ``p`` of class 1, increasing in (0, 1).
        loss_if_1: the loss when the true label is 1, ``-ln p`` (also the multi-class loss
            against the true class's probability ``p``).
        loss_if_0: the loss when the true label is 0, ``-ln(1 - p)``.
        checks: both curves, computed by :func:`crossent.binary_cross_entropy` on the logits
            ``ln(p / (1 - p))``, against Python's ``math``.
    """

    probability: tuple[float, ...]
    loss_if_1: tuple[float, ...]
    loss_if_0: tuple[float, ...]
    checks: tuple[Check, ...]


def loss_curves(points: int = 499, smallest: float = 1e-3) -> LossCurves:
    """The curves of the two loss figures, from ``p = smallest`` to ``1 - smallest``.

    The probabilities are ``1/(points+1), ..., points/(points+1)``, and below the first of them
    (and, mirrored, above the last) 20 per decade down to ``smallest``, so that the curve reaches
    every prediction a plot marks on it.

    Args:
        points: how many evenly spaced probabilities to evaluate, at least 1.
        smallest: the smallest probability, in [1e-12, 0.5]; predictions below it lie above the
            curve's end.

    Returns:
        The :class:`LossCurves`.
    """
    if points < 1:
        raise ValueError(f"points must be positive, got {points}")
    if not 1e-12 <= smallest <= 0.5:
        raise ValueError(f"smallest must be in [1e-12, 0.5], got {smallest}")
    even = [i / (points + 1) for i in range(1, points + 1)]
    decades = math.log10(even[0] / smallest)
    tail = [even[0] * 10 ** (-k / 20) for k in range(1, math.ceil(20 * decades) + 1)]
    tail = [max(value, smallest) for value in tail]
    probability = sorted({*even, *tail, *(1 - value for value in tail)})
    logits = torch.logit(torch.tensor(probability, dtype=torch.float64))
    curves = []
    for label in (1.0, 0.0):
        labels = torch.full_like(logits, label)
        curves.append(binary_cross_entropy(logits, labels, reduction="none").tolist())
    loss_if_1, loss_if_0 = curves
    error_1 = max(
        abs(loss + math.log(p)) / max(1.0, loss)
        for loss, p in zip(loss_if_1, probability, strict=True)
    )
    error_0 = max(
        abs(loss + math.log1p(-p)) / max(1.0, loss)
        for loss, p in zip(loss_if_0, probability, strict=True)
    )
    tolerance = 1e-12
    checks = (
        Check("-ln p (Python math), largest relative difference", error_1, 0.0, tolerance),
        Check("-ln(1 - p) (Python math), largest relative difference", error_0, 0.0, tolerance),
    )
    return LossCurves(tuple(probability), tuple(loss_if_1), tuple(loss_if_0), checks)


def loss_curves_for(
    explanation: DistributionExplanation | TextExplanation | StabilityExplanation,
) -> LossCurves:
    """:func:`loss_curves` reaching down to the smallest probability the explanation marks.

    A distribution marks ``q`` of each label the target gives mass, a text each token's
    probability; the curve goes down to half the smallest of them (within [1e-12, 1e-3]).
    """
    if isinstance(explanation, DistributionExplanation):
        marked = [q for p, q in zip(explanation.p, explanation.q, strict=True) if p > 0]
    elif isinstance(explanation, TextExplanation):
        marked = [token.probability for token in explanation.tokens]
    else:
        marked = []
    positive = [value / 2 for value in marked if value > 0]
    return loss_curves(smallest=min(1e-3, max(1e-12, min(positive))) if positive else 1e-3)
