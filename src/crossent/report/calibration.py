"""Calibration and temperature (``crossent eval --calibration``): the terminal lines, an HTML
table, the reliability diagram and the loss-against-temperature curve as inline SVG, from
:attr:`crossent.evaluation.EvaluationResult.calibration`.

The definitions behind every number are in :mod:`crossent.calibration`; this module only shows
them. The figures are plain SVG with presentation attributes (no style), as the page's
Content-Security-Policy wants, and carry ``data-*`` attributes with their numbers.
"""

from __future__ import annotations

import math
from html import escape
from typing import TYPE_CHECKING

from crossent.report.page import cell

if TYPE_CHECKING:  # only the types: importing calibration imports torch
    from crossent.calibration import CalibrationResult, TemperatureFit

_SIZE, _PAD = 320, 44


def _bpb(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def temperature_line(result: CalibrationResult) -> str:
    """One line: ``T*`` and its bracket (or the side of the grid it lies beyond), and the loss
    and bits per byte there against those at ``T = 1``."""
    fit = result.temperature
    plain_bpb = _bpb(result.bits_per_byte(result.nats_per_token))
    plain = f"(T = 1: {result.nats_per_token:.4f}, {plain_bpb})"
    best_bpb = _bpb(result.bits_per_byte(fit.nats_per_token))
    at = f"{fit.nats_per_token:.4f} nats/token, {best_bpb} bits/byte"
    if fit.temperature is None:
        lowest, highest = fit.curve[0].temperature, fit.curve[-1].temperature
        edge = highest if fit.outside == "above" else lowest
        return (
            f"temperature: T* is {fit.outside} the grid ({lowest:g} to {highest:g}), not "
            f"extrapolated; at T = {edge:g}: {at} {plain}"
        )
    low, high = fit.bracket
    return (
        f"temperature: T* = {fit.temperature:.4f} (between {low:.4g} and {high:.4g}): {at} {plain}"
    )


def format_calibration(result: CalibrationResult) -> list[str]:
    """The terminal lines: ECE both ways, confidence against accuracy, entropy against loss and
    the verdict, and the best temperature."""
    se = f" ± {result.gap_se:.4f}" if result.gap_se is not None else ""
    return [
        f"calibration of the top-1 prediction: ECE {result.ece:.4f} (15 equal-width bins), "
        f"{result.ece_equal_mass:.4f} (15 equal-mass bins); mean confidence "
        f"{result.mean_confidence:.4f}, accuracy {result.accuracy:.4f}",
        f"mean entropy {result.mean_entropy:.4f} nats/token, loss {result.nats_per_token:.4f}: "
        f"loss - entropy = {result.gap:+.4f}{se}, {result.verdict}",
        temperature_line(result),
    ]


def calibration_table(result: CalibrationResult) -> str:
    """The HTML table of the headline numbers; cells carry ``data-metric``."""
    fit = result.temperature
    best = "-" if fit.temperature is None else f"{fit.temperature:.4f}"
    rows = [
        ("ECE, 15 equal-width bins", "ece", f"{result.ece:.4f}"),
        ("ECE, 15 equal-mass bins", "ece_equal_mass", f"{result.ece_equal_mass:.4f}"),
        ("mean confidence (top-1)", "mean_confidence", f"{result.mean_confidence:.4f}"),
        ("accuracy (top-1)", "accuracy", f"{result.accuracy:.4f}"),
        ("mean entropy, nats/token", "mean_entropy", f"{result.mean_entropy:.4f}"),
        ("loss, nats/token", "nats_per_token", f"{result.nats_per_token:.4f}"),
        ("verdict (loss against entropy)", "verdict", result.verdict),
        ("T*, the loss-minimising temperature", "best_temperature", best),
        ("loss at T*, nats/token", "best_nats_per_token", f"{fit.nats_per_token:.4f}"),
        (
            "bits per byte at T*",
            "best_bits_per_byte",
            _bpb(result.bits_per_byte(fit.nats_per_token)),
        ),
    ]
    body = "".join(
        f"<tr><th>{escape(name)}</th>{cell(value, metric=metric)}</tr>"
        for name, metric, value in rows
    )
    return f'<table class="calibration"><tbody>{body}</tbody></table>'


def reliability_svg(result: CalibrationResult) -> str:
    """The reliability diagram: per equal-width bin a bar of its accuracy at its confidence
    range, the diagonal of perfect calibration, and a dot at each bin's mean confidence."""
    span = _SIZE - 2 * _PAD

    def x(value: float) -> float:
        return _PAD + span * value

    def y(value: float) -> float:
        return _SIZE - _PAD - span * value

    parts = [
        f'<line x1="{x(0):.1f}" y1="{y(0):.1f}" x2="{x(1):.1f}" y2="{y(1):.1f}" '
        'stroke="#888888" stroke-dasharray="4 3"/>'
    ]
    for item in result.bins:
        parts.append(
            f'<rect x="{x(item.lower) + 1:.1f}" y="{y(item.accuracy):.1f}" '
            f'width="{span * (item.upper - item.lower) - 2:.1f}" '
            f'height="{span * item.accuracy:.1f}" '
            f'fill="#4878a8" data-confidence="{item.confidence:.6f}" '
            f'data-accuracy="{item.accuracy:.6f}" data-tokens="{item.tokens}">'
            f"<title>confidence {item.lower:.3f}-{item.upper:.3f}: {item.tokens} tokens, mean "
            f"confidence {item.confidence:.3f}, accuracy {item.accuracy:.3f}</title></rect>"
            f'<circle cx="{x(item.confidence):.1f}" cy="{y(item.confidence):.1f}" r="2.5" '
            'fill="#c04040"/>'
        )
    parts.append(_axes("confidence (top-1 probability)", "accuracy", ("0", "1"), ("0", "1")))
    return _svg("reliability", "reliability diagram", parts)


def temperature_svg(fit: TemperatureFit) -> str:
    """The mean loss at each grid temperature (log scale) as a line, and ``T*`` as a dot."""
    points = fit.curve
    span = _SIZE - 2 * _PAD
    low, high = math.log(points[0].temperature), math.log(points[-1].temperature)
    losses = [point.nats_per_token for point in points]
    floor, top = min(losses), max(losses)
    height = (top - floor) or 1.0

    def x(temperature: float) -> float:
        return _PAD + span * (math.log(temperature) - low) / (high - low)

    def y(loss: float) -> float:
        return _SIZE - _PAD - span * (loss - floor) / height

    line = " ".join(f"{x(p.temperature):.1f},{y(p.nats_per_token):.1f}" for p in points)
    parts = [f'<polyline points="{line}" fill="none" stroke="#4878a8" stroke-width="1.5"/>']
    parts += [
        f'<circle cx="{x(p.temperature):.1f}" cy="{y(p.nats_per_token):.1f}" r="2" fill="#4878a8" '
        f'data-temperature="{p.temperature:.6f}" data-nats="{p.nats_per_token:.6f}">'
        f"<title>T = {p.temperature:.4g}: {p.nats_per_token:.4f} nats/token</title></circle>"
        for p in points
    ]
    if fit.temperature is not None:
        parts.append(
            f'<circle cx="{x(fit.temperature):.1f}" cy="{y(fit.nats_per_token):.1f}" r="4" '
            f'fill="#c04040" data-best-temperature="{fit.temperature:.6f}">'
            f"<title>T* = {fit.temperature:.4f}: {fit.nats_per_token:.4f} nats/token</title>"
            "</circle>"
        )
    ticks = (f"{points[0].temperature:g}", f"{points[-1].temperature:g}")
    parts.append(
        _axes("temperature T (log scale)", "nats/token", ticks, (f"{floor:.3g}", f"{top:.3g}"))
    )
    return _svg("temperature", "loss against temperature", parts)


def _axes(x_label: str, y_label: str, x_ticks: tuple[str, str], y_ticks: tuple[str, str]) -> str:
    end = _SIZE - _PAD
    return (
        f'<line x1="{_PAD}" y1="{end}" x2="{end}" y2="{end}" stroke="#333333"/>'
        f'<line x1="{_PAD}" y1="{_PAD}" x2="{_PAD}" y2="{end}" stroke="#333333"/>'
        f'<text x="{_PAD}" y="{end + 14}" font-size="10" text-anchor="middle">{x_ticks[0]}</text>'
        f'<text x="{end}" y="{end + 14}" font-size="10" text-anchor="middle">{x_ticks[1]}</text>'
        f'<text x="{_PAD - 4}" y="{end}" font-size="10" text-anchor="end">{y_ticks[0]}</text>'
        f'<text x="{_PAD - 4}" y="{_PAD + 4}" font-size="10" text-anchor="end">{y_ticks[1]}</text>'
        f'<text x="{_SIZE / 2}" y="{_SIZE - 8}" font-size="11" text-anchor="middle">'
        f"{x_label}</text>"
        f'<text x="6" y="{_PAD - 14}" font-size="11">{y_label}</text>'
    )


def _svg(name: str, label: str, parts: list[str]) -> str:
    return (
        f'<svg class="{name}" xmlns="http://www.w3.org/2000/svg" width="{_SIZE}" '
        f'height="{_SIZE}" role="img" aria-label="{label}">{"".join(parts)}</svg>'
    )
