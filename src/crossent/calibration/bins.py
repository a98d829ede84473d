"""Confidence bins of the top-1 prediction: the reliability diagram and the expected calibration
error (ECE), from sums kept per bin, never from the tokens' confidences themselves.

A token's *confidence* is the probability its model gives its most likely token,
``max softmax(z) = exp(max z - logsumexp z)``; it is *correct* when that token is the target.
A bin holds the tokens whose confidence falls in it, and keeps three sums: their count, their
summed confidence and their number correct. Its point on the reliability diagram is (mean
confidence, accuracy), and

    ECE = sum over bins of (n_b / n) * |accuracy_b - mean confidence_b|
        = (1 / n) * sum over bins of |correct_b - confidence sum_b|

(Guo et al. 2017, "On calibration of modern neural networks", with :data:`BINS` = 15, the
count most of that literature reports). Two binnings:

* **Equal-width** (the headline): bin ``b`` of ``B`` is ``[b / B, (b + 1) / B)``, the last
  closed at 1. It is what temperature-scaling papers report, so the number compares with
  theirs; bins where few tokens fall weigh little but are noisy.
* **Equal-mass** (adaptive): ``B`` bins of about ``n / B`` tokens each, cut at the quantiles of
  confidence, which spreads the estimate's noise evenly (Nixon et al. 2019). The quantiles are
  read off a fine histogram of :data:`FINE_BINS` equal-width bins (width 1e-4), so no token's
  confidence is held: fine bin ``j`` goes, whole, to equal-mass bin
  ``min(B * below_j // n, B - 1)``, where ``below_j`` counts the tokens of the fine bins before
  it. Each equal-mass bin's sums are exact; only its edges are rounded to the fine grid, so a
  bin holds ``n / B`` tokens give or take those of one fine bin. Empty bins are left out.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

BINS = 15
FINE_BINS = 10_000


@dataclass(frozen=True)
class ReliabilityBin:
    """One bin of the reliability diagram: its confidence range and what fell in it.

    Attributes:
        lower: the bin's lowest confidence (inclusive).
        upper: its highest (exclusive, but 1 is in the last bin).
        tokens: how many tokens' confidence fell in it (at least 1).
        confidence: their mean confidence.
        accuracy: the fraction of them whose top-1 token was the target.
    """

    lower: float
    upper: float
    tokens: int
    confidence: float
    accuracy: float

    def to_dict(self) -> dict[str, float | int]:
        """The JSON shape of one bin."""
        return {
            "lower": self.lower,
            "upper": self.upper,
            "tokens": self.tokens,
            "confidence": self.confidence,
            "accuracy": self.accuracy,
        }


def bin_index(confidence: Tensor, bins: int) -> Tensor:
    """The equal-width bin of each confidence in ``[0, 1]``: ``floor(c * bins)``, 1 in the last."""
    return (confidence * bins).long().clamp_(0, bins - 1)


def equal_width_bins(counts: Tensor, confidence: Tensor, correct: Tensor) -> list[ReliabilityBin]:
    """The non-empty bins of ``len(counts)`` equal-width bins, from their three sums each."""
    bins = counts.shape[0]
    return [
        ReliabilityBin(
            index / bins,
            (index + 1) / bins,
            int(counts[index]),
            float(confidence[index] / counts[index]),
            float(correct[index] / counts[index]),
        )
        for index in range(bins)
        if counts[index] > 0
    ]


def equal_mass_bins(
    counts: Tensor, confidence: Tensor, correct: Tensor, bins: int = BINS
) -> list[ReliabilityBin]:
    """``bins`` bins of about equal mass cut from a fine equal-width histogram (module docstring).

    Args:
        counts, confidence, correct: ``[F]`` the fine bins' token counts, summed confidences
            and numbers correct.
        bins: how many equal-mass bins, ``B``.
    """
    fine = counts.shape[0]
    total = int(counts.sum())
    if total == 0:
        return []
    below = torch.cumsum(counts.long(), 0) - counts.long()  # tokens before each fine bin
    group = (below * bins // total).clamp_(max=bins - 1)
    out = []
    for index in range(bins):
        members = (group == index).nonzero().squeeze(-1)
        members = members[counts[members] > 0]
        if members.numel() == 0:
            continue
        tokens = float(counts[members].sum())
        out.append(
            ReliabilityBin(
                float(members[0]) / fine,
                float(members[-1] + 1) / fine,
                int(tokens),
                float(confidence[members].sum()) / tokens,
                float(correct[members].sum()) / tokens,
            )
        )
    return out


def expected_calibration_error(bins: Sequence[ReliabilityBin]) -> float:
    """``sum_b (n_b / n) |accuracy_b - confidence_b|`` over the bins; 0 for no bins."""
    total = sum(item.tokens for item in bins)
    if total == 0:
        return 0.0
    return sum(item.tokens * abs(item.accuracy - item.confidence) for item in bins) / total
