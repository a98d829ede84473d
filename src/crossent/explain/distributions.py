"""Cross-entropy on a toy distribution, such as the three animals (dog, cat, fish): a prediction
``q`` over a few labels against a target, one label or a distribution ``p``, term by term, with
``H(p)`` and ``KL(p || q)``; given logits, also ``logsumexp(z) - z[target]``."""

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
    check_finite,
    cross_term,
    log,
    log_softmax,
    temperatures_shown,
)
from crossent.explain.temperature import TemperatureScan, scan_distribution
from crossent.losses import reference
from crossent.losses.cross_entropy import cross_entropy, cross_entropy_with_stats
from crossent.losses.distill import kl_divergence
from crossent.metrics import nats_to_bits, perplexity

# How far from 1 the given probabilities may sum.
SUM_TOLERANCE = 1e-6


@dataclass(frozen=True)
class DistributionExplanation:
    """``H(p, q)`` for a target ``p`` and a prediction ``q`` over a few labels, term by term.

    Attributes:
        labels: the classes, in order.
        q: the predicted distribution, normalised.
        log_q: ``ln q_i``, in nats (``-inf`` where ``q_i`` is 0).
        logits: the logits ``z`` that ``q`` was made from, or None when probabilities were given.
        logsumexp: with logits, ``ln sum_i e^(z_i)``, the log of the softmax's normaliser, so that
            ``ln q_i = z_i - logsumexp`` (from :func:`crossent.cross_entropy_with_stats`); None
            when probabilities were given.
        target_logit: with logits, the target's logit ``z[target]`` for a one-hot target, and
            ``sum_i p_i z_i`` (the smoothed ``p``) for a distribution; None otherwise. The loss
            is then ``nats = logsumexp - target_logit``, the form crossent and PyTorch compute.
        target: the label of a one-hot target, or None for a distribution.
        p: the target before smoothing (one-hot for a label), normalised.
        label_smoothing: ``eps``; the smoothed target is ``(1 - eps) * p + eps / V`` (PyTorch's).
        smoothed_p: the target the loss uses (``p`` itself when ``eps`` is 0).
        terms: ``-smoothed_p_i * ln q_i`` per label, in nats (0 where ``smoothed_p_i`` is 0).
        nats: ``H(smoothed_p, q)``, the sum of the terms.
        bits: the same in bits.
        perplexity: ``e ** nats``.
        entropy_nats: ``H(smoothed_p)``, 0 for a one-hot target.
        kl_nats: ``KL(smoothed_p || q) = nats - entropy_nats``.
        checks: every number above against independent computations.
        temperatures: with temperatures asked for, the prediction at each of them
            (:mod:`crossent.explain.temperature`), with its own checks; None otherwise.
    """

    labels: tuple[str, ...]
    q: tuple[float, ...]
    log_q: tuple[float, ...]
    logits: tuple[float, ...] | None
    logsumexp: float | None
    target_logit: float | None
    target: str | None
    p: tuple[float, ...]
    label_smoothing: float
    smoothed_p: tuple[float, ...]
    terms: tuple[float, ...]
    nats: float
    bits: float
    perplexity: float
    entropy_nats: float
    kl_nats: float
    checks: tuple[Check, ...]
    temperatures: TemperatureScan | None = None

    @property
    def soft(self) -> bool:
        """Whether the loss's target is a distribution rather than one label."""
        return self.target is None or self.label_smoothing > 0

    def to_dict(self) -> dict[str, Any]:
        """The numbers under stable keys (``crossent explain --json``)."""
        return {
            "mode": "distributions",
            "labels": list(self.labels),
            "q": list(self.q),
            "log_q": list(self.log_q),
            "logits": None if self.logits is None else list(self.logits),
            "logsumexp": self.logsumexp,
            "target_logit": self.target_logit,
            "target": self.target,
            "p": list(self.p),
            "label_smoothing": self.label_smoothing,
            "smoothed_p": list(self.smoothed_p),
            "terms": list(self.terms),
            "nats": self.nats,
            "bits": self.bits,
            "perplexity": self.perplexity,
            "entropy_nats": self.entropy_nats,
            "kl_nats": self.kl_nats,
            "temperatures": None if self.temperatures is None else self.temperatures.to_dict(),
            "checks": [check.to_dict() for check in self.checks],
        }


def explain_distributions(
    q: Sequence[float] | None = None,
    *,
    logits: Sequence[float] | None = None,
    labels: Sequence[str] | None = None,
    target: str | None = None,
    p: Sequence[float] | None = None,
    label_smoothing: float = 0.0,
    temperatures: Sequence[float] = (),
) -> DistributionExplanation:
    """Cross-entropy of a prediction against a target, term by term (the three animals).

    The loss is computed by :func:`crossent.cross_entropy` on the logits ``ln q`` (or the given
    logits), with a class-index target for a label and a probability target for ``p``, and
    checked against the sum of the terms in plain float64 ``math``, against
    ``torch.nn.functional.cross_entropy`` and against :func:`crossent.reference.cross_entropy`.
    ``H(p)`` is ``crossent.cross_entropy`` of ``p`` against itself, ``KL(p || q)`` is
    :func:`crossent.kl_divergence`; both are checked against the formula, and their sum against
    ``H(p, q)``. Given logits, the loss is also written as crossent computes it,
    ``logsumexp(z) - z[target]`` (``logsumexp(z) - sum_i p_i z_i`` for a distribution), and that
    difference is checked against ``H(p, q)``.

    Args:
        q: the predicted probabilities, non-negative and summing to 1 within 1e-6; or None with
            ``logits``.
        logits: raw scores instead of ``q``; ``q = softmax(logits)``.
        labels: one name per class (default ``"0"``, ``"1"``, ...), all different.
        target: the label of the right answer (a one-hot ``p``); or None with ``p``.
        p: a target distribution instead of ``target``, validated like ``q``.
        label_smoothing: ``eps`` in [0, 1]; the target becomes ``(1 - eps) * p + eps / V``.
        temperatures: temperatures ``T > 0`` to show the prediction at, ``softmax(z / T)``
            (:mod:`crossent.explain.temperature`; with probabilities, ``z = ln q``), beside
            ``T = 1``; none by default.

    Returns:
        The :class:`DistributionExplanation`, in nats and bits.

    Raises:
        ValueError: a probability that is negative or not finite, probabilities not summing to 1
            within 1e-6, a non-finite logit, lengths that disagree, a repeated label, a target
            that is not a label, both or neither of ``q``/``logits`` or ``target``/``p``,
            ``label_smoothing`` outside [0, 1], or a temperature that is not a finite number > 0.

    Example:
        >>> cat = explain_distributions([0.2, 0.7, 0.1], labels=["dog", "cat", "fish"],
        ...                             target="cat")
        >>> round(cat.nats, 6), round(cat.bits, 6), round(cat.perplexity, 6)
        (0.356675, 0.514573, 1.428571)
    """
    names = _labels(q, logits, labels, target, p, label_smoothing)
    temperatures_shown(temperatures)
    q_values, log_q, given_logits = _prediction(q, logits, names)
    index, p_values = _target(target, p, names)
    eps = float(label_smoothing)
    smoothed = tuple((1 - eps) * value + eps / len(names) for value in p_values)
    terms = tuple(
        cross_term(weight, log_value) for weight, log_value in zip(smoothed, log_q, strict=True)
    )

    # crossent's numbers, from the logits it would see in a model: ln q (or the given logits).
    row = torch.tensor([given_logits if given_logits is not None else log_q], dtype=torch.float64)
    # a class index (int64) for a label, a probability row for a distribution p
    loss_target = (
        torch.tensor([index])
        if index is not None
        else torch.tensor([p_values], dtype=torch.float64)
    )
    nats = float(cross_entropy(row, loss_target, label_smoothing=eps))
    log_smoothed = torch.tensor([[log(weight) for weight in smoothed]], dtype=torch.float64)
    smoothed_target = torch.tensor([smoothed], dtype=torch.float64)
    entropy = float(cross_entropy(log_smoothed, smoothed_target))
    kl = float(kl_divergence(row, log_smoothed))

    checks = _loss_checks(row, loss_target, eps, terms, nats, q_values)
    checks += _identity_checks(smoothed, log_q, nats, entropy, kl)
    logsumexp = target_logit = None
    if given_logits is not None:
        stats = cross_entropy_with_stats(row, loss_target, label_smoothing=eps)
        logsumexp = float(stats.logsumexp[0])
        target_logit = math.fsum(w * z for w, z in zip(smoothed, given_logits, strict=True))
        checks += _logit_checks(given_logits, logsumexp, target_logit, nats)
    scan = None
    if temperatures:
        scan = scan_distribution(
            given_logits if given_logits is not None else log_q,
            loss_target,
            smoothed,
            eps,
            temperatures,
            plain=(nats, None if index is None else q_values[index]),
        )
    return DistributionExplanation(
        labels=names,
        q=q_values,
        log_q=tuple(log_q),
        logits=given_logits,
        logsumexp=logsumexp,
        target_logit=target_logit,
        target=target,
        p=p_values,
        label_smoothing=eps,
        smoothed_p=smoothed,
        terms=terms,
        nats=nats,
        bits=nats_to_bits(nats),
        perplexity=perplexity(nats),
        entropy_nats=entropy,
        kl_nats=kl,
        checks=tuple(checks),
        temperatures=scan,
    )


def _labels(
    q: Sequence[float] | None,
    logits: Sequence[float] | None,
    labels: Sequence[str] | None,
    target: str | None,
    p: Sequence[float] | None,
    label_smoothing: float,
) -> tuple[str, ...]:
    """The class names, once the arguments are known to describe one prediction and one target."""
    if (q is None) == (logits is None):
        raise ValueError("give the prediction as probabilities q or as logits, exactly one")
    if (target is None) == (p is None):
        raise ValueError("give the target as one label or as a distribution p, exactly one")
    if not 0.0 <= label_smoothing <= 1.0:
        raise ValueError(f"label smoothing must be in [0, 1], got {label_smoothing}")
    given = q if q is not None else logits
    assert given is not None
    size = len(given)
    if size == 0:
        raise ValueError("no classes: give at least one probability or logit")
    names = tuple(labels) if labels is not None else tuple(str(index) for index in range(size))
    if len(names) != size:
        what = "probabilities" if q is not None else "logits"
        raise ValueError(f"{len(names)} labels for {size} {what}; give one label per class")
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise ValueError(f"label {repeated[0]!r} appears more than once; labels must differ")
    return names


def _prediction(
    q: Sequence[float] | None, logits: Sequence[float] | None, names: tuple[str, ...]
) -> tuple[tuple[float, ...], list[float], tuple[float, ...] | None]:
    """``q``, ``ln q`` and the logits (None when ``q`` was given), from whichever was given."""
    if q is not None:
        q_values = _distribution(q, "q", names)
        return q_values, [log(value) for value in q_values], None
    assert logits is not None
    check_finite(logits, "z", names)
    given_logits = tuple(float(value) for value in logits)
    log_q = log_softmax(given_logits)
    return tuple(math.exp(value) for value in log_q), log_q, given_logits


def _target(
    target: str | None, p: Sequence[float] | None, names: tuple[str, ...]
) -> tuple[int | None, tuple[float, ...]]:
    """The target's class index (None for a distribution) and its distribution ``p``."""
    if target is not None:
        if target not in names:
            raise ValueError(f"target {target!r} is not one of the labels: {', '.join(names)}")
        index = names.index(target)
        return index, tuple(1.0 if i == index else 0.0 for i in range(len(names)))
    assert p is not None
    if len(p) != len(names):
        raise ValueError(f"p has {len(p)} probabilities for {len(names)} classes")
    return None, _distribution(p, "p", names)


def _distribution(values: Sequence[float], name: str, labels: Sequence[str]) -> tuple[float, ...]:
    """Validated probabilities, normalised to remove the rounding their sum may carry."""
    check_finite(values, name, labels)
    for label, value in zip(labels, values, strict=True):
        if value < 0:
            raise ValueError(f"{name}({label!r}) is {value}; probabilities must be non-negative")
    total = math.fsum(values)
    if abs(total - 1.0) > SUM_TOLERANCE:
        raise ValueError(
            f"the probabilities {name} sum to {total:.10g}, not 1 (within {SUM_TOLERANCE:g})"
        )
    return tuple(value / total for value in values)


def _loss_checks(
    row: Tensor,
    loss_target: Tensor,
    eps: float,
    terms: tuple[float, ...],
    nats: float,
    q_values: tuple[float, ...],
) -> list[Check]:
    """crossent's ``H(p, q)`` against the sum of the terms, the reference and PyTorch."""
    checks = [
        Check(
            "the sum of the terms (Python math)",
            math.fsum(terms),
            nats,
            relative_tolerance(FLOAT64_TOLERANCE, nats),
        ),
        Check(
            "crossent.reference.cross_entropy (float64)",
            float(reference.cross_entropy(row, loss_target, label_smoothing=eps)),
            nats,
            relative_tolerance(FLOAT64_TOLERANCE, nats),
        ),
    ]
    # PyTorch multiplies 0 by ln 0 = -inf for probability targets, giving NaN: no check there.
    if loss_target.dtype == torch.int64 or all(value > 0 for value in q_values):
        checks.append(
            Check(
                "torch.nn.functional.cross_entropy",
                float(F.cross_entropy(row, loss_target, label_smoothing=eps)),
                nats,
                relative_tolerance(FLOAT64_TOLERANCE, nats),
            )
        )
    return checks


def _identity_checks(
    smoothed: tuple[float, ...], log_q: list[float], nats: float, entropy: float, kl: float
) -> list[Check]:
    """``H(p)`` and ``KL(p || q)`` against their formulas, and their sum against ``H(p, q)``."""
    entropy_by_formula = math.fsum(cross_term(weight, log(weight)) for weight in smoothed)
    kl_by_formula = math.fsum(
        cross_term(weight, log_value - log(weight))
        for weight, log_value in zip(smoothed, log_q, strict=True)
    )
    return [
        Check(
            "H(p) by its formula (Python math)",
            entropy_by_formula,
            entropy,
            relative_tolerance(FLOAT64_TOLERANCE, entropy),
        ),
        Check(
            "KL(p || q) by its formula (Python math)",
            kl_by_formula,
            kl,
            relative_tolerance(FLOAT64_TOLERANCE, kl),
        ),
        Check("H(p) + KL(p || q)", entropy + kl, nats, relative_tolerance(FLOAT64_TOLERANCE, nats)),
    ]


def _logit_checks(
    logits: tuple[float, ...], logsumexp: float, target_logit: float, nats: float
) -> list[Check]:
    """crossent's logsumexp against Python's ``math``, and ``logsumexp - z[target]`` against
    ``H(p, q)``."""
    top = max(logits)
    by_math = top + math.log(math.fsum(math.exp(z - top) for z in logits))
    return [
        Check(
            "logsumexp(z) (Python math)",
            by_math,
            logsumexp,
            relative_tolerance(FLOAT64_TOLERANCE, logsumexp),
        ),
        Check(
            "logsumexp(z) - z[target]",
            logsumexp - target_logit,
            nats,
            relative_tolerance(FLOAT64_TOLERANCE, max(abs(logsumexp), abs(target_logit))),
        ),
    ]
