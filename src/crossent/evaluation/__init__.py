"""Evaluate a causal language model on texts (:func:`evaluate`) and what it returns.

:mod:`crossent.evaluation.run` scores; :mod:`crossent.evaluation.records` holds the results.
"""

from crossent.data.counts import count_words as count_words  # importable where it was
from crossent.evaluation.records import (
    DocumentScore,
    EvaluationResult,
    Inputs,
    Provenance,
    TokenScore,
    top_alternatives,
)
from crossent.evaluation.run import (
    DEFAULT_WINDOW_CAP,
    Prefix,
    Progress,
    evaluate,
    prefix_token,
)

__all__ = [
    "DEFAULT_WINDOW_CAP",
    "DocumentScore",
    "EvaluationResult",
    "Inputs",
    "Prefix",
    "Progress",
    "Provenance",
    "TokenScore",
    "count_words",
    "evaluate",
    "prefix_token",
    "top_alternatives",
]
