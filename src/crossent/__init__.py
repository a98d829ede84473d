"""crossent: cross-entropy for language models, exact, lean and fast.

The loss functions take logits with the class dimension last (``[..., V]``); see
:mod:`crossent.losses.cross_entropy` for the conventions they share.
"""

from crossent import metrics, nn
from crossent.comparison import ComparisonResult, compare
from crossent.evaluation import EvaluationResult, TokenScore, evaluate
from crossent.losses import parallel, reference
from crossent.losses.binary import binary_cross_entropy
from crossent.losses.cross_entropy import CrossEntropyStats, cross_entropy, cross_entropy_with_stats
from crossent.losses.distill import distillation_loss, kl_divergence
from crossent.losses.linear import linear_cross_entropy, linear_cross_entropy_with_stats

__version__ = "0.1.0"

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
