"""crossent: cross-entropy for language models, exact, lean and fast.

The loss functions take logits with the class dimension last (``[..., V]``); see
:mod:`crossent.losses.cross_entropy` for the conventions they share.

The names below are imported on first use, so that ``import crossent`` (and the ``crossent``
command's ``--version`` and ``--help``) costs nothing until a loss or a job is called.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

# The one place the version is written; pyproject.toml reads it from here.
__version__ = "0.1.0"

if TYPE_CHECKING:
    from crossent import metrics, nn
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

# Where each public name lives: the module, and the attribute (None for a module itself).
_PUBLIC: dict[str, tuple[str, str | None]] = {
    "ComparisonResult": ("crossent.comparison", "ComparisonResult"),
    "CrossEntropyStats": ("crossent.losses.cross_entropy", "CrossEntropyStats"),
    "EvaluationResult": ("crossent.evaluation", "EvaluationResult"),
    "TokenScore": ("crossent.evaluation", "TokenScore"),
    "binary_cross_entropy": ("crossent.losses.binary", "binary_cross_entropy"),
    "compare": ("crossent.comparison", "compare"),
    "cross_entropy": ("crossent.losses.cross_entropy", "cross_entropy"),
    "cross_entropy_with_stats": ("crossent.losses.cross_entropy", "cross_entropy_with_stats"),
    "distillation_loss": ("crossent.losses.distill", "distillation_loss"),
    "evaluate": ("crossent.evaluation", "evaluate"),
    "kl_divergence": ("crossent.losses.distill", "kl_divergence"),
    "linear_cross_entropy": ("crossent.losses.linear", "linear_cross_entropy"),
    "linear_cross_entropy_with_stats": (
        "crossent.losses.linear",
        "linear_cross_entropy_with_stats",
    ),
    "metrics": ("crossent.metrics", None),
    "nn": ("crossent.nn", None),
    "parallel": ("crossent.losses.parallel", None),
    "reference": ("crossent.losses.reference", None),
}

__all__ = [
    "ComparisonResult",
    "CrossEntropyStats",
    "EvaluationResult",
    "TokenScore",
    "__version__",
    "binary_cross_entropy",
    "compare",
    "cross_entropy",
    "cross_entropy_with_stats",
    "distillation_loss",
    "evaluate",
    "kl_divergence",
    "linear_cross_entropy",
    "linear_cross_entropy_with_stats",
    "metrics",
    "nn",
    "parallel",
    "reference",
]


def __getattr__(name: str) -> Any:
    try:
        module_name, attribute = _PUBLIC[name]
    except KeyError:
        raise AttributeError(f"module 'crossent' has no attribute {name!r}") from None
    module = importlib.import_module(module_name)
    value = module if attribute is None else getattr(module, attribute)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return __all__
