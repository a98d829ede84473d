"""crossent: cross-entropy for language models, exact, lean and fast.

The loss functions take logits with the class dimension last (``[..., V]``); see
:mod:`crossent.losses.cross_entropy` for the conventions they share.

The names below are imported on first use, so that ``import crossent`` (and the ``crossent``
command's ``--version`` and ``--help``) costs nothing until a loss or a job is called.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from crossent.lazy import lazy_attributes
from crossent.version import __version__

if TYPE_CHECKING:
    from crossent import hf, metrics, nn
    from crossent.comparison import ComparisonResult, compare
    from crossent.evaluation import EvaluationResult, TokenScore, evaluate
    from crossent.losses import parallel, reference
    from crossent.losses.binary import binary_cross_entropy
    from crossent.losses.cross_entropy import (
        CrossEntropyStats,
        cross_entropy,
        cross_entropy_with_stats,
    )
    from crossent.losses.distill import distillation_loss, kl_divergence
    from crossent.losses.linear import linear_cross_entropy, linear_cross_entropy_with_stats
    from crossent.sampling import Sample, sample

# Where each public name lives; hf, metrics, nn, parallel and reference are modules themselves.
_HOMES = {
    "ComparisonResult": "crossent.comparison",
    "CrossEntropyStats": "crossent.losses.cross_entropy",
    "EvaluationResult": "crossent.evaluation",
    "Sample": "crossent.sampling",
    "TokenScore": "crossent.evaluation",
    "binary_cross_entropy": "crossent.losses.binary",
    "compare": "crossent.comparison",
    "cross_entropy": "crossent.losses.cross_entropy",
    "cross_entropy_with_stats": "crossent.losses.cross_entropy",
    "distillation_loss": "crossent.losses.distill",
    "evaluate": "crossent.evaluation",
    "hf": "crossent.hf",
    "kl_divergence": "crossent.losses.distill",
    "linear_cross_entropy": "crossent.losses.linear",
    "linear_cross_entropy_with_stats": "crossent.losses.linear",
    "metrics": "crossent.metrics",
    "nn": "crossent.nn",
    "parallel": "crossent.losses.parallel",
    "reference": "crossent.losses.reference",
    "sample": "crossent.sampling",
}

__all__ = [
    "ComparisonResult",
    "CrossEntropyStats",
    "EvaluationResult",
    "Sample",
    "TokenScore",
    "__version__",
    "binary_cross_entropy",
    "compare",
    "cross_entropy",
    "cross_entropy_with_stats",
    "distillation_loss",
    "evaluate",
    "hf",
    "kl_divergence",
    "linear_cross_entropy",
    "linear_cross_entropy_with_stats",
    "metrics",
    "nn",
    "parallel",
    "reference",
    "sample",
]


__getattr__ = lazy_attributes(
    __name__, _HOMES, modules=("hf", "metrics", "nn", "parallel", "reference")
)


def __dir__() -> list[str]:
    return __all__
