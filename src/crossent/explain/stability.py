"""Cross-entropy at the edge of floating point: the naive ``-log(softmax(z) + 1e-10)``, as it is
often written, against the log-space loss on extreme logits, beside the exact value, for the loss
and for its gradient."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from crossent import tolerance
from crossent.explain.checks import Check
from crossent.explain.numbers import check_finite, log_softmax
from crossent.losses.cross_entropy import cross_entropy

# The epsilon of the naive loss as it is often written, -log(softmax(z) + 1e-10).
NAIVE_EPSILON = 1e-10


@dataclass(frozen=True)
class StabilityCase:
    """One row of logits, the target's index and the dtype the losses compute in."""

    name: str
    logits: tuple[float, ...]
    target: int
    dtype: Literal["float32", "float64"] = "float32"


DEFAULT_STABILITY_CASES = (
    StabilityCase("ordinary logits", (2.0, 1.0, 0.1), 0),
    StabilityCase("confident and right", (1000.0, 0.0, -1000.0), 0),
    StabilityCase("confident and wrong", (1000.0, 0.0, -1000.0), 2),
    StabilityCase("confident and wrong, float64", (1000.0, 0.0, -1000.0), 2, "float64"),
    StabilityCase("logits of size 1e4", (1e4, 0.0, -1e4), 1),
    StabilityCase("p = 2e-9, nothing overflows", (0.0, -20.0), 1, "float64"),
)


@dataclass(frozen=True)
class StabilityRow:
    """One case computed three ways, loss and gradient.

    The gradient is that of the loss with respect to the target's own logit, which is
    ``p_target - 1``: about -1 when the model is confidently wrong, the signal that corrects it.

    Attributes:
        case: the logits, target and dtype.
        naive_nats: ``-log(softmax(z)[target] + 1e-10)``, the naive loss, in ``case.dtype``.
        naive_without_epsilon_nats: ``-log(softmax(z)[target])``, what the epsilon was added for.
        log_space_nats: :func:`crossent.cross_entropy`, ``logsumexp(z) - z[target]``.
        torch_nats: ``torch.nn.functional.cross_entropy``.
        exact_nats: the float64 value from Python's ``math`` on the same (dtype-rounded) logits.
        naive_gradient: the naive loss's gradient on the target's logit (autograd).
        log_space_gradient: :func:`crossent.cross_entropy`'s (autograd).
        torch_gradient: ``torch.nn.functional.cross_entropy``'s (autograd).
        exact_gradient: ``p_target - 1`` in float64 from Python's ``math``.
    """

    case: StabilityCase
    naive_nats: float
    naive_without_epsilon_nats: float
    log_space_nats: float
    torch_nats: float
    exact_nats: float
    naive_gradient: float
    log_space_gradient: float
    torch_gradient: float
    exact_gradient: float


@dataclass(frozen=True)
class StabilityExplanation:
    """The naive and the log-space loss beside the exact value, case by case.

    Attributes:
        rows: one per case.
        checks: for every case, crossent's loss and gradient against the exact values, each
            allowed PyTorch's own error at that dtype plus 16 (float32) or 64 (float64) machine
            epsilons, relative (:mod:`crossent.tolerance`).
    """

    rows: tuple[StabilityRow, ...]
    checks: tuple[Check, ...]

    def to_dict(self) -> dict[str, Any]:
        """The numbers under stable keys (``crossent explain --stability --json``)."""
        rows = []
        for row in self.rows:
            record = asdict(row)
            case = record.pop("case")
            rows.append({**case, "logits": list(row.case.logits), **record})
        return {
            "mode": "stability",
            "epsilon": NAIVE_EPSILON,
            "rows": rows,
            "checks": [check.to_dict() for check in self.checks],
        }


def explain_stability(
    cases: Sequence[StabilityCase] = DEFAULT_STABILITY_CASES,
) -> StabilityExplanation:
    """The naive ``-log(softmax(z) + 1e-10)`` against the log-space loss, with exact values.

    The naive recipe rounds a tiny probability to 0 and then the epsilon caps the loss at
    ``-ln 1e-10 = 23.03`` nats, however wrong the model is, and its gradient vanishes with the
    probability; even where nothing underflows the epsilon biases the loss. The log-space loss
    ``logsumexp(z) - z[target]`` never forms the probability and is exact.

    Args:
        cases: the rows of logits to compute; by default :data:`DEFAULT_STABILITY_CASES`.

    Returns:
        The :class:`StabilityExplanation`; losses in nats.

    Raises:
        ValueError: a case with no logits, a non-finite logit, or a target outside the row.
    """
    if not cases:
        raise ValueError("no cases to compute")
    rows, checks = [], []
    for case in cases:
        exact_nats, exact_gradient = _exact(case)
        (naive, unguarded, ours, torch_loss), gradients = _losses_and_gradients(case)
        naive_gradient, _, our_gradient, torch_gradient = gradients
        rows.append(
            StabilityRow(
                case=case,
                naive_nats=naive,
                naive_without_epsilon_nats=unguarded,
                log_space_nats=ours,
                torch_nats=torch_loss,
                exact_nats=exact_nats,
                naive_gradient=naive_gradient,
                log_space_gradient=our_gradient,
                torch_gradient=torch_gradient,
                exact_gradient=exact_gradient,
            )
        )
        dtype = _dtype(case)
        checks += [
            Check(
                f"{case.name}: crossent.cross_entropy, nats",
                ours,
                exact_nats,
                tolerance.allowed_error(
                    abs(torch_loss - exact_nats), dtype, max(1.0, abs(exact_nats))
                ),
            ),
            Check(
                f"{case.name}: crossent.cross_entropy, gradient",
                our_gradient,
                exact_gradient,
                tolerance.allowed_error(abs(torch_gradient - exact_gradient), dtype),
            ),
        ]
    return StabilityExplanation(tuple(rows), tuple(checks))


def _dtype(case: StabilityCase) -> torch.dtype:
    return torch.float32 if case.dtype == "float32" else torch.float64


def _exact(case: StabilityCase) -> tuple[float, float]:
    """The loss and its target-logit gradient ``p - 1`` in float64 from Python's ``math``, on
    the logits as ``case.dtype`` holds them, once the case is known to be computable."""
    if not case.logits:
        raise ValueError(f"case {case.name!r} has no logits")
    if not 0 <= case.target < len(case.logits):
        raise ValueError(
            f"case {case.name!r}: target {case.target} is outside [0, {len(case.logits)})"
        )
    check_finite(case.logits, f"{case.name}: z", [str(i) for i in range(len(case.logits))])
    rounded = torch.tensor(case.logits, dtype=_dtype(case)).tolist()  # what the dtype holds
    if not all(math.isfinite(value) for value in rounded):
        raise ValueError(f"case {case.name!r}: a logit overflows {case.dtype}")
    log_probabilities = log_softmax(rounded)
    # 0.0 - turns -0.0 (the loss of a certain target) into 0.0
    return 0.0 - log_probabilities[case.target], math.exp(log_probabilities[case.target]) - 1.0


def _losses_and_gradients(case: StabilityCase) -> tuple[list[float], list[float]]:
    """The naive, unguarded, crossent and PyTorch losses and their target-logit gradients."""
    target = torch.tensor([case.target])

    def naive(logits: Tensor) -> Tensor:
        return -torch.log(torch.softmax(logits, -1)[0, case.target] + NAIVE_EPSILON)

    def unguarded(logits: Tensor) -> Tensor:
        return -torch.log(torch.softmax(logits, -1)[0, case.target])

    def ours(logits: Tensor) -> Tensor:
        return cross_entropy(logits, target)

    def pytorch(logits: Tensor) -> Tensor:
        return F.cross_entropy(logits, target)

    losses, gradients = [], []
    for loss_of in (naive, unguarded, ours, pytorch):
        logits = torch.tensor([case.logits], dtype=_dtype(case), requires_grad=True)  # (1, V)
        loss = loss_of(logits)
        (gradient,) = torch.autograd.grad(loss, logits)
        # + 0.0 turns -0.0 (from -log 1) into 0.0
        losses.append(float(loss.detach()) + 0.0)
        gradients.append(float(gradient[0, case.target]) + 0.0)
    return losses, gradients
