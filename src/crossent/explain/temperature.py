"""Temperature: the logits divided by ``T`` before the softmax, ``q_T = softmax(z / T)``, and what
that does to the prediction, the target's probability, the cross-entropy, the entropy and the
perplexity.

``T < 1`` sharpens ``q`` towards its most likely class and ``T > 1`` flattens it towards the
uniform distribution; ``T = 1`` is the prediction itself. A prediction given as probabilities has
the logits ``z = ln q`` (logits are defined up to a constant, which the softmax removes), so
``q_T`` is ``q ** (1 / T)`` normalised, and a class of probability 0 keeps probability 0.

Every scan checks its numbers against the limits, which hold for any finite logits ``z`` over
``V`` classes and any target ``p``:

* ``T -> 0``: ``q_T`` tends to the uniform distribution on the classes of the largest logit (one-hot
  when there is one), so ``H(q_T)`` tends to the log of their number (0 for one); and
  ``T * H(p, q_T) - (max z - sum_i p_i z_i) = T ln sum_j e^((z_j - max z) / T)`` lies in
  ``[0, T ln V]``: the loss grows like ``(max z - z[target]) / T`` unless the target is the
  argmax.
* ``T -> inf``: ``|ln q_T,i + ln V| <= (max z - min z) / T`` for every class, so ``q_T``,
  ``H(q_T)`` and ``H(p, q_T)`` tend to ``1 / V``, ``ln V`` and ``ln V`` within that bound.

A class of probability 0 stays at 0 at every ``T``, so there ``V`` counts the others (the support
of ``q``). A toy's limits are taken at ``T`` = the gap between its two largest logits / 64 (the
mass off the argmax is then below ``V e^-64``) and at ``T = 10^6 max(1, max z - min z)``; a
text's at ``T = 10^-4`` and at ``10^6`` times the largest spread of its logits
(:mod:`crossent.explain.temperature_text`).

The entropy ``H(q_T)`` is what the prediction expects its own loss to be: if the answers were
drawn from ``q_T``, the mean loss would be ``H(q_T)``. A loss above the entropy therefore means a
prediction surer than its record warrants (over-confident), one below it an under-confident
prediction; dividing the logits by a ``T > 1`` raises the entropy, and temperature scaling in the
calibration literature (Guo et al., 2017, "On Calibration of Modern Neural Networks") fits the one
``T`` that minimises the loss on held-out data. On one toy prediction or one short text the
comparison is an illustration, not a measurement.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from crossent.explain.checks import FLOAT64_TOLERANCE, Check, relative_tolerance
from crossent.explain.numbers import (
    cross_term,
    exp_or_inf,
    log,
    log_softmax,
    temperatures_shown,
)
from crossent.losses.cross_entropy import cross_entropy, cross_entropy_with_stats
from crossent.metrics import nats_to_bits, perplexity

# How far below the gap between the two largest logits the "T -> 0" limit is taken: the mass
# left off the argmax is at most V e^-64.
_SMALL_T_GAPS = 64.0
# How far above the spread of the logits the "T -> inf" limit is taken: within 1e-6 of uniform.
_LARGE_T_SPREADS = 1e6


@dataclass(frozen=True)
class TemperatureRow:
    """The prediction and its loss with the logits divided by one temperature.

    Attributes:
        temperature: ``T > 0``.
        q: a toy distribution's ``q_T = softmax(z / T)``, one per label; None for a text.
        target_probability: ``q_T(target)`` of a toy distribution's target label, None for a
            target distribution; for a text, the mean over its tokens of each one's probability.
        nats: ``H(p, q_T)``; for a text, the mean loss per token.
        bits: the same in bits.
        perplexity: ``e ** nats``.
        entropy_nats: ``H(q_T)``, the prediction's own entropy; for a text, its mean over the
            positions.
    """

    temperature: float
    q: tuple[float, ...] | None
    target_probability: float | None
    nats: float
    bits: float
    perplexity: float
    entropy_nats: float

    @property
    def excess_nats(self) -> float:
        """``nats - entropy_nats``: above 0, the prediction is surer than its loss warrants."""
        return self.nats - self.entropy_nats

    def to_dict(self) -> dict[str, Any]:
        """The numbers under stable keys."""
        return {
            "temperature": self.temperature,
            "q": None if self.q is None else list(self.q),
            "target_probability": self.target_probability,
            "nats": self.nats,
            "bits": self.bits,
            "perplexity": self.perplexity,
            "entropy_nats": self.entropy_nats,
            "excess_nats": self.excess_nats,
        }


@dataclass(frozen=True)
class TemperatureScan:
    """One :class:`TemperatureRow` per temperature, and the checks of all of them.

    Attributes:
        rows: the temperatures asked for and 1, increasing, each once.
        checks: every row's numbers against independent computations, the row at ``T = 1``
            against the explanation itself, and the limits ``T -> 0`` and ``T -> inf``.
    """

    rows: tuple[TemperatureRow, ...]
    checks: tuple[Check, ...]

    def to_dict(self) -> dict[str, Any]:
        """The rows and checks under stable keys (``crossent explain --temperature --json``)."""
        return {
            "rows": [row.to_dict() for row in self.rows],
            "checks": [check.to_dict() for check in self.checks],
        }


def row(
    temperature: float,
    nats: float,
    entropy: float,
    target_probability: float | None,
    q: tuple[float, ...] | None = None,
) -> TemperatureRow:
    """A :class:`TemperatureRow`, its bits and perplexity from ``nats``."""
    return TemperatureRow(
        temperature=temperature,
        q=q,
        target_probability=target_probability,
        nats=nats,
        bits=nats_to_bits(nats),
        perplexity=perplexity(nats),
        entropy_nats=entropy,
    )


def scan_distribution(
    logits: Sequence[float],
    loss_target: Tensor,
    smoothed: Sequence[float],
    label_smoothing: float,
    temperatures: Sequence[float],
    *,
    plain: tuple[float, float | None],
) -> TemperatureScan:
    """A toy prediction at each temperature, from crossent's loss on ``z / T`` in float64.

    ``q_T`` is ``e^(z / T - logsumexp)`` with the log-sum-exp of
    :func:`crossent.cross_entropy_with_stats`, ``H(p, q_T)`` is :func:`crossent.cross_entropy` of
    ``z / T`` (with the label smoothing), ``H(q_T)`` is :func:`crossent.cross_entropy` of
    ``z / T`` against ``q_T`` itself. Each is checked against Python's ``math`` and PyTorch, and
    the scan against the limits of the module's docstring.

    Args:
        logits: ``z``, the given logits or ``ln q`` (``-inf`` where ``q`` is 0).
        loss_target: the target as :func:`crossent.cross_entropy` takes it: a class index
            ``(1,)`` or a probability row ``(1, V)``, before smoothing.
        smoothed: the target ``p`` the loss uses, after smoothing.
        label_smoothing: ``eps``.
        temperatures: the temperatures; 1 is added.
        plain: the explanation's own loss and target probability (None for a distribution),
            which the row at ``T = 1`` must equal.

    Returns:
        The :class:`TemperatureScan`; rows in nats.

    Raises:
        ValueError: a temperature that is not a finite number > 0.
    """
    index = int(loss_target[0]) if loss_target.dtype == torch.int64 else None
    rows, checks = [], []
    for temperature in temperatures_shown(temperatures):
        scaled = [value / temperature for value in logits]
        nats, q, entropy = _toy_numbers(scaled, loss_target, label_smoothing)
        rows.append(row(temperature, nats, entropy, None if index is None else q[index], q))
        checks += _toy_checks(temperature, scaled, loss_target, label_smoothing, smoothed, rows[-1])
    checks += _toy_limits(logits, loss_target, smoothed, label_smoothing)
    checks += plain_checks(rows, *plain)
    return TemperatureScan(tuple(rows), tuple(checks))


def _toy_numbers(
    scaled: Sequence[float], loss_target: Tensor, label_smoothing: float
) -> tuple[float, tuple[float, ...], float]:
    """crossent's ``H(p, q_T)``, ``q_T`` and ``H(q_T)`` from the divided logits ``z / T``."""
    scores = torch.tensor([scaled], dtype=torch.float64)  # (1, V)
    stats = cross_entropy_with_stats(scores, loss_target, label_smoothing=label_smoothing)
    q = (scores[0] - stats.logsumexp[0]).exp()  # (V,)
    entropy = float(cross_entropy(scores, q[None]))
    return float(stats.loss), tuple(q.tolist()), entropy


def _toy_checks(
    temperature: float,
    scaled: Sequence[float],
    loss_target: Tensor,
    label_smoothing: float,
    smoothed: Sequence[float],
    numbers: TemperatureRow,
) -> list[Check]:
    """One row's ``q_T``, losses and perplexity against Python's ``math`` and PyTorch."""
    assert numbers.q is not None
    at = f"T = {temperature:g}:"
    log_q = log_softmax(scaled)
    by_math = [math.exp(value) for value in log_q]
    by_torch = torch.softmax(torch.tensor(scaled, dtype=torch.float64), dim=0).tolist()
    nats_by_math = math.fsum(cross_term(w, value) for w, value in zip(smoothed, log_q, strict=True))
    entropy_by_math = math.fsum(cross_term(value, log(value)) for value in by_math)
    checks = [
        Check(f"{at} q_T by Python math, largest |difference|", _largest(by_math, numbers.q), 0.0,
              FLOAT64_TOLERANCE),
        Check(f"{at} q_T by torch.softmax, largest |difference|", _largest(by_torch, numbers.q),
              0.0, FLOAT64_TOLERANCE),
        Check(f"{at} H(p, q_T), the sum of -p ln q_T (Python math)", nats_by_math, numbers.nats,
              relative_tolerance(FLOAT64_TOLERANCE, numbers.nats)),
        Check(f"{at} H(q_T) by its formula (Python math)", entropy_by_math, numbers.entropy_nats,
              relative_tolerance(FLOAT64_TOLERANCE, numbers.entropy_nats)),
        Check(f"{at} perplexity, e^H(p, q_T) by Python math", exp_or_inf(nats_by_math),
              numbers.perplexity, relative_tolerance(FLOAT64_TOLERANCE, numbers.perplexity)),
    ]  # fmt: skip
    # PyTorch multiplies 0 by ln 0 = -inf for probability targets, giving NaN: no check there.
    if loss_target.dtype == torch.int64 or all(value > -math.inf for value in scaled):
        scores = torch.tensor([scaled], dtype=torch.float64)
        by_pytorch = float(F.cross_entropy(scores, loss_target, label_smoothing=label_smoothing))
        checks.append(
            Check(f"{at} H(p, q_T), torch.nn.functional.cross_entropy(z / T)", by_pytorch,
                  numbers.nats, relative_tolerance(FLOAT64_TOLERANCE, numbers.nats))
        )  # fmt: skip
    if numbers.target_probability is not None and label_smoothing == 0:
        checks.append(
            Check(f"{at} q_T(target) = e^-H(p, q_T) (Python math)", exp_or_inf(-nats_by_math),
                  numbers.target_probability, FLOAT64_TOLERANCE)
        )  # fmt: skip
    return checks


def _toy_limits(
    logits: Sequence[float], loss_target: Tensor, smoothed: Sequence[float], label_smoothing: float
) -> list[Check]:
    """crossent's numbers at a very small and a very large temperature against their limits."""
    support = [value for value in logits if value > -math.inf]
    top, size = max(support), len(support)
    ties = sum(value == top for value in support)
    below = [value for value in support if value < top]
    small = (top - max(below)) / _SMALL_T_GAPS if below else 1.0
    spread = top - min(support)
    large = _LARGE_T_SPREADS * max(1.0, spread)
    bound = spread / large + 1e-12

    nats, q, entropy = _toy_numbers([value / small for value in logits], loss_target,
                                    label_smoothing)  # fmt: skip
    argmax = [1 / ties if value == top else 0.0 for value in logits]
    target_logits = math.fsum(w * z for w, z in zip(smoothed, logits, strict=True) if w > 0)
    scaled_loss = small * nats
    checks = [
        Check(f"T -> 0 (T = {small:.3g}): q_T one-hot on the argmax, largest |difference|",
              _largest(q, argmax), 0.0, FLOAT64_TOLERANCE),
        Check(f"T -> 0 (T = {small:.3g}): H(q_T) = ln(number of largest logits)", entropy,
              math.log(ties), FLOAT64_TOLERANCE),
        Check(f"T -> 0 (T = {small:.3g}): T H(p, q_T) = max z - sum_i p_i z_i, within T ln V",
              scaled_loss, top - target_logits,
              small * math.log(size) + relative_tolerance(FLOAT64_TOLERANCE, scaled_loss)),
    ]  # fmt: skip
    nats, q, entropy = _toy_numbers([value / large for value in logits], loss_target,
                                    label_smoothing)  # fmt: skip
    uniform = [1 / size if value > -math.inf else 0.0 for value in logits]
    checks += [
        Check(f"T -> inf (T = {large:.3g}): q_T uniform, largest |difference|",
              _largest(q, uniform), 0.0, bound),
        Check(f"T -> inf (T = {large:.3g}): H(q_T) = ln V", entropy, math.log(size), bound),
    ]  # fmt: skip
    if all(w == 0 for w, value in zip(smoothed, logits, strict=True) if value == -math.inf):
        checks.append(
            Check(f"T -> inf (T = {large:.3g}): H(p, q_T) = ln V", nats, math.log(size), bound)
        )
    return checks


def plain_checks(
    rows: Sequence[TemperatureRow], nats: float, probability: float | None
) -> list[Check]:
    """The row at ``T = 1`` against the explanation's own loss and target probability."""
    (plain,) = (numbers for numbers in rows if numbers.temperature == 1.0)
    checks = [
        Check("T = 1 is the plain explanation: the loss", plain.nats, nats,
              relative_tolerance(FLOAT64_TOLERANCE, nats)),
    ]  # fmt: skip
    if probability is not None and plain.target_probability is not None:
        checks.append(
            Check("T = 1 is the plain explanation: the target's probability",
                  plain.target_probability, probability, FLOAT64_TOLERANCE)
        )  # fmt: skip
    return checks


def _largest(values: Sequence[float], expected: Sequence[float]) -> float:
    return max(abs(a - b) for a, b in zip(values, expected, strict=True))
