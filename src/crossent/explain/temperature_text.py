"""A model reading a text at several temperatures: its logits divided by ``T``, the mean loss, the
mean entropy of its predictions, the perplexity and the mean probability of the true tokens.

The numbers come from the logits the text explanation already holds (a short text, at most
:data:`crossent.explain.MAX_TEXT_TOKENS` positions), by the formula in float64, which is the
truth as the six steps are: ``ln q_T = z / T - max - ln sum e^(z / T - max)``, per position the
loss ``-ln q_T(target)`` and the entropy ``-sum q_T ln q_T``, then their means. crossent's and
PyTorch's losses and entropies of ``logits / T`` in the model's dtype are checked against it
(:mod:`crossent.tolerance`'s rule, as for the text's own loss), and crossent's float64 loss at a
very small and a very large ``T`` against the limits of :mod:`crossent.explain.temperature`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from crossent import tolerance
from crossent.explain.checks import FLOAT64_TOLERANCE, PRINTED_TOLERANCE, Check, relative_tolerance
from crossent.explain.numbers import exp_or_inf, temperatures_shown
from crossent.explain.temperature import TemperatureRow, TemperatureScan, plain_checks, row
from crossent.losses.cross_entropy import cross_entropy, cross_entropy_with_stats

# The "T -> 0" limit: T H(p, q_T) is within T ln V of mean(max z - z[target]).
_SMALL_T = 1e-4
# The "T -> inf" limit is taken this far above the spread of the logits: within 1e-6 of uniform.
_LARGE_T_SPREADS = 1e6


@dataclass(frozen=True)
class _Exact:
    """The float64 means over the positions at one temperature."""

    nats: float
    entropy: float
    probability: float


def scan_text(
    logits: Tensor,
    targets: Tensor,
    temperatures: Sequence[float],
    *,
    plain: tuple[float, float],
) -> TemperatureScan:
    """A text's mean loss, mean entropy, perplexity and mean target probability at each ``T``.

    Args:
        logits: ``(1, N, V)``, the model's logits for the text, in its dtype.
        targets: ``(1, N)``, the true next tokens.
        temperatures: the temperatures; 1 is added.
        plain: the text explanation's loss and mean target probability, which the row at
            ``T = 1`` must equal.

    Returns:
        The :class:`~crossent.explain.TemperatureScan`; rows in nats per token, ``q`` None.

    Raises:
        ValueError: a temperature that is not a finite number > 0.
    """
    exact_logits = logits[0].double()  # (N, V)
    rows: list[TemperatureRow] = []
    checks: list[Check] = []
    for temperature in temperatures_shown(temperatures):
        exact = _exact(exact_logits, targets[0], temperature)
        rows.append(row(temperature, exact.nats, exact.entropy, exact.probability))
        checks += _checks(logits[0], targets[0], temperature, rows[-1])
    checks += _limits(exact_logits, targets[0])
    checks += plain_checks(rows, *plain)
    return TemperatureScan(tuple(rows), tuple(checks))


def _exact(logits: Tensor, targets: Tensor, temperature: float) -> _Exact:
    """The formula in float64 on ``logits / T``: ``(N, V)`` logits, ``(N,)`` targets."""
    scaled = logits / temperature  # (N, V)
    top = scaled.amax(dim=-1, keepdim=True)  # (N, 1)
    log_q = scaled - top - (scaled - top).exp().sum(dim=-1, keepdim=True).log()  # (N, V)
    token_log_q = log_q.gather(-1, targets[:, None])[:, 0]  # (N,)
    entropy = -(log_q.exp() * log_q).sum(dim=-1)  # (N,)
    return _Exact(
        nats=float(-token_log_q.mean()),
        entropy=float(entropy.mean()),
        probability=float(token_log_q.exp().mean()),
    )


def _checks(
    logits: Tensor, targets: Tensor, temperature: float, numbers: TemperatureRow
) -> list[Check]:
    """crossent's and PyTorch's numbers on ``logits / T`` in the model's dtype against the
    float64 truth: ``(N, V)`` logits, ``(N,)`` targets."""
    assert numbers.target_probability is not None
    at, dtype = f"T = {temperature:g}:", logits.dtype
    with torch.no_grad():
        scaled = logits / temperature  # (N, V), in the model's dtype
        probs = torch.softmax(scaled, dim=-1)  # (N, V)
        torch_loss = float(F.cross_entropy(scaled, targets))
        torch_entropy = float(F.cross_entropy(scaled, probs))
        categorical = torch.distributions.Categorical(logits=scaled)
        by_categorical = float(categorical.entropy().mean())  # type: ignore[no-untyped-call]
        crossent_loss = float(cross_entropy(scaled, targets))
        crossent_entropy = float(cross_entropy(scaled, probs))
        probability = float(probs.gather(-1, targets[:, None]).mean())
    nats, entropy = numbers.nats, numbers.entropy_nats
    printed = PRINTED_TOLERANCE + torch.finfo(dtype).eps * max(1.0, nats)
    printed_entropy = PRINTED_TOLERANCE + torch.finfo(dtype).eps * max(1.0, entropy)
    return [
        Check(f"{at} torch.nn.functional.cross_entropy(logits / T)", torch_loss, nats, printed),
        Check(f"{at} crossent.cross_entropy(logits / T)", crossent_loss, nats,
              tolerance.allowed_error(abs(torch_loss - nats), dtype, max(1.0, nats))),
        Check(f"{at} mean entropy, torch.distributions.Categorical(logits / T)", by_categorical,
              entropy, printed_entropy),
        Check(f"{at} mean entropy, crossent.cross_entropy(logits / T, softmax(logits / T))",
              crossent_entropy, entropy,
              tolerance.allowed_error(abs(torch_entropy - entropy), dtype, max(1.0, entropy))),
        Check(f"{at} mean p(target), torch.softmax(logits / T)", probability,
              numbers.target_probability, printed),
        Check(f"{at} perplexity, e^(PyTorch's loss)", exp_or_inf(torch_loss), numbers.perplexity,
              numbers.perplexity * math.expm1(printed)),
    ]  # fmt: skip


def _limits(logits: Tensor, targets: Tensor) -> list[Check]:
    """crossent's float64 loss and entropy at a very small and a very large ``T`` against their
    limits: ``(N, V)`` logits, ``(N,)`` targets."""
    size = logits.shape[-1]
    top = logits.amax(dim=-1)  # (N,)
    margin = float((top - logits.gather(-1, targets[:, None])[:, 0]).mean())
    spread = float((top - logits.amin(dim=-1)).max())
    large = _LARGE_T_SPREADS * max(1.0, spread)
    bound = spread / large + FLOAT64_TOLERANCE
    scaled_loss = _SMALL_T * float(cross_entropy(logits / _SMALL_T, targets))
    stats = cross_entropy_with_stats(logits / large, targets)
    probs = torch.softmax(logits / large, dim=-1)  # (N, V)
    entropy = float(cross_entropy(logits / large, probs))
    small = f"T -> 0 (T = {_SMALL_T:g})"
    at_large = f"T -> inf (T = {large:.3g})"
    return [
        Check(f"{small}: T * mean loss = mean(max z - z[target]), within T ln V", scaled_loss,
              margin, _SMALL_T * math.log(size) + relative_tolerance(FLOAT64_TOLERANCE, margin)),
        Check(f"{at_large}: mean loss = ln V", float(stats.loss), math.log(size), bound),
        Check(f"{at_large}: mean entropy = ln V", entropy, math.log(size), bound),
        Check(f"{at_large}: mean p(target) = 1 / V", float((-stats.token_loss).exp().mean()),
              1 / size, bound / size),
    ]  # fmt: skip
