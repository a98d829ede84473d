"""The sums a calibration needs, added chunk by chunk and across ranks, and what they come to.

:class:`CalibrationMeter` holds a fixed number of float64 sums whatever the number of tokens (the
bins of :mod:`crossent.calibration.bins`, the grid of :mod:`crossent.calibration.temperature`,
and five totals), so memory stays as lean as a plain evaluation; its sums add up across
``torchrun`` ranks like :class:`crossent.metrics.NLLMeter`'s. :meth:`CalibrationMeter.result`
turns them into a :class:`CalibrationResult`.

**Over- or under-confident.** The headline verdict compares the mean loss with the mean entropy
of the predicted distributions. Their per-token difference, ``(lse - z_t) - (lse - E_p[z]) =
E_p[z] - z_t``, is exactly the slope of the cross-entropy in ``beta = 1 / T`` at ``T = 1``
(:mod:`crossent.calibration.temperature`), so a loss above the entropy (over-confident) is the
same statement as ``T* > 1``: flattening the distributions would lower the loss. The verdict is
``"calibrated"`` when the gap is within two standard errors of 0 (its per-token spread, the
tokens taken as independent). The top-1 view, mean confidence against accuracy, is reported
beside it and can disagree: it sees only the most likely token.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import torch
from torch import Tensor

from crossent.calibration.bins import (
    BINS,
    FINE_BINS,
    ReliabilityBin,
    bin_index,
    equal_mass_bins,
    equal_width_bins,
    expected_calibration_error,
)
from crossent.calibration.temperature import TEMPERATURES, TemperatureFit, fit_temperature
from crossent.distributed import all_sum_floats
from crossent.metrics import bits_per_byte, nats_to_bits
from crossent.uncertainty import mean_standard_error

if TYPE_CHECKING:
    from torch.distributed import ProcessGroup

Verdict = Literal["over-confident", "under-confident", "calibrated"]

# Where T = 1 sits on the grid: its sums are the plain loss and the entropy.
UNIT = TEMPERATURES.index(1.0)


def _zeros(*shape: int) -> Tensor:
    return torch.zeros(shape, dtype=torch.float64)


@dataclass
class CalibrationMeter:
    """Sums over scored tokens: totals, equal-width and fine confidence bins, the temperature grid.

    Attributes:
        totals: ``[5]`` tokens, confidence, correct, entropy (nats), squared loss-entropy gap.
        width: ``[3, BINS]`` per equal-width bin: tokens, summed confidence, correct.
        fine: ``[3, FINE_BINS]`` the same for the fine bins equal-mass bins are cut from.
        grid: ``[len(TEMPERATURES), 3]`` per grid temperature: the summed cross-entropy and its
            first and second derivatives in ``1 / T``.
    """

    totals: Tensor = field(default_factory=lambda: _zeros(5))
    width: Tensor = field(default_factory=lambda: _zeros(3, BINS))
    fine: Tensor = field(default_factory=lambda: _zeros(3, FINE_BINS))
    grid: Tensor = field(default_factory=lambda: _zeros(len(TEMPERATURES), 3))

    def add(self, confidence: Tensor, correct: Tensor, entropy: Tensor, grid: Tensor) -> None:
        """Add ``r`` scored tokens.

        Args:
            confidence: ``[r]`` each token's top-1 probability.
            correct: ``[r]`` bool, top-1 is the target.
            entropy: ``[r]`` the entropy of each predicted distribution, nats.
            grid: ``[r, len(TEMPERATURES), 3]`` each token's cross-entropy and its two
                derivatives in ``1 / T`` at every grid temperature.
        """
        confidence = confidence.detach().double().cpu()
        hits = correct.detach().double().cpu()
        grid = grid.detach().double().cpu()
        gap = grid[:, UNIT, 1]
        self.totals += torch.stack(
            [
                torch.tensor(float(confidence.numel()), dtype=torch.float64),
                confidence.sum(),
                hits.sum(),
                entropy.detach().double().cpu().sum(),
                gap.square().sum(),
            ]
        )
        for sums, bins in ((self.width, BINS), (self.fine, FINE_BINS)):
            index = bin_index(confidence, bins)
            sums[0].index_add_(0, index, torch.ones_like(confidence))
            sums[1].index_add_(0, index, confidence)
            sums[2].index_add_(0, index, hits)
        self.grid += grid.sum(dim=0)

    def merge(self, other: CalibrationMeter) -> None:
        """Add another meter's sums (another shard of the tokens)."""
        for mine, theirs in zip(self._parts(), other._parts(), strict=True):
            mine += theirs

    def all_reduce(self, group: ProcessGroup | None = None) -> None:
        """Replace the sums by their totals over the ranks of ``group``, in float64."""
        flat = torch.cat([part.reshape(-1) for part in self._parts()])
        (summed,) = all_sum_floats([flat.tolist()], group)
        start = 0
        for part in self._parts():
            values = summed[start : start + part.numel()]
            part.copy_(torch.tensor(values, dtype=torch.float64).view_as(part))
            start += part.numel()

    def _parts(self) -> tuple[Tensor, ...]:
        return self.totals, self.width, self.fine, self.grid

    @property
    def tokens(self) -> int:
        """The tokens added so far."""
        return int(self.totals[0])

    def result(self, num_bytes: int) -> CalibrationResult:
        """What the sums come to, with bits per byte over ``num_bytes`` (the bytes the tokens
        cover; 0 gives None). Raises ValueError when no token was added."""
        tokens = self.tokens
        if tokens == 0:
            raise ValueError("no scored tokens to measure calibration on")
        _, confidence, correct, entropy, gap_squared = self.totals.tolist()
        losses, slopes, curvatures = (self.grid[:, column] / tokens for column in range(3))
        gap = float(slopes[UNIT])
        width = equal_width_bins(*self.width)
        mass = equal_mass_bins(*self.fine)
        return CalibrationResult(
            tokens=tokens,
            bytes=num_bytes,
            mean_confidence=confidence / tokens,
            accuracy=correct / tokens,
            mean_entropy=entropy / tokens,
            nats_per_token=float(losses[UNIT]),
            gap_se=mean_standard_error(gap * tokens, gap_squared, tokens),
            ece=expected_calibration_error(width),
            ece_equal_mass=expected_calibration_error(mass),
            bins=tuple(width),
            equal_mass_bins=tuple(mass),
            temperature=fit_temperature(
                TEMPERATURES, losses.tolist(), slopes.tolist(), curvatures.tolist()
            ),
        )


@dataclass(frozen=True)
class CalibrationResult:
    """How well the confidence of a model's predictions matched the text (module docstring).

    Attributes:
        tokens: the scored tokens, each counted once.
        bytes: the bytes they cover.
        mean_confidence: the mean top-1 probability.
        accuracy: the fraction of tokens whose top-1 token was the target.
        mean_entropy: the mean entropy of the predicted distributions, nats.
        nats_per_token: the mean loss, nats (the plain one, at ``T = 1``).
        gap_se: the standard error of ``nats_per_token - mean_entropy`` (None under 2 tokens).
        ece: the expected calibration error over :data:`~crossent.calibration.bins.BINS`
            equal-width bins, the headline.
        ece_equal_mass: the same over equal-mass bins.
        bins, equal_mass_bins: the non-empty bins of each, the reliability diagram.
        temperature: the temperature that minimises the loss, and the loss against it.
    """

    tokens: int
    bytes: int
    mean_confidence: float
    accuracy: float
    mean_entropy: float
    nats_per_token: float
    gap_se: float | None
    ece: float
    ece_equal_mass: float
    bins: tuple[ReliabilityBin, ...]
    equal_mass_bins: tuple[ReliabilityBin, ...]
    temperature: TemperatureFit

    @property
    def gap(self) -> float:
        """Mean loss minus mean entropy, nats: above 0 over-confident, below under-confident."""
        return self.nats_per_token - self.mean_entropy

    @property
    def verdict(self) -> Verdict:
        """Over- or under-confident when the gap is beyond two standard errors, else calibrated."""
        margin = 2 * self.gap_se if self.gap_se is not None else 0.0
        if self.gap > margin:
            return "over-confident"
        if self.gap < -margin:
            return "under-confident"
        return "calibrated"

    def bits_per_byte(self, nats_per_token: float) -> float | None:
        """A mean loss over these tokens in bits per byte, as :func:`crossent.bits_per_byte`."""
        return bits_per_byte(nats_per_token * self.tokens, self.bytes) if self.bytes else None

    def to_dict(self) -> dict[str, Any]:
        """The JSON shape of ``crossent eval --calibration``'s ``calibration`` object."""
        fit = self.temperature
        return {
            "tokens": self.tokens,
            "confidence": "top-1 probability, max softmax(logits)",
            "bins": BINS,
            "ece": self.ece,
            "ece_binning": "equal-width",
            "ece_equal_mass": self.ece_equal_mass,
            "mean_confidence": self.mean_confidence,
            "accuracy": self.accuracy,
            "mean_entropy_nats": self.mean_entropy,
            "nats_per_token": self.nats_per_token,
            "loss_minus_entropy_nats": self.gap,
            "loss_minus_entropy_se": self.gap_se,
            "verdict": self.verdict,
            "reliability": [item.to_dict() for item in self.bins],
            "reliability_equal_mass": [item.to_dict() for item in self.equal_mass_bins],
            "temperature": {
                "best": fit.temperature,
                "outside_grid": fit.outside,
                "bracket": _finite(fit.bracket),
                "nats_per_token": fit.nats_per_token,
                "bits_per_token": nats_to_bits(fit.nats_per_token),
                "bits_per_byte": self.bits_per_byte(fit.nats_per_token),
                "nats_per_token_bounds": _finite(fit.loss_bounds),
                "grid": "13 temperatures 2 ** (k / 2), k = -6 .. 6, Hermite-interpolated",
                "curve": [point.to_dict() for point in fit.curve],
            },
        }


def _finite(values: tuple[float, float]) -> list[float | None]:
    """A pair for JSON, which has no infinity: an open end (outside the grid) is null."""
    return [value if math.isfinite(value) else None for value in values]
