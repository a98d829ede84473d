"""Evaluate a causal language model on texts (:func:`evaluate`) and what it returns.

:mod:`crossent.evaluation.run` scores; :mod:`crossent.evaluation.records` holds the results;
:mod:`crossent.evaluation.token_sink` hands per-token scores on as they are made.
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
from crossent.evaluation.token_sink import TokenSink

__all__ = [
    "DEFAULT_WINDOW_CAP",
    "DocumentScore",
    "EvaluationResult",
    "Inputs",
    "Prefix",
    "Progress",
    "Provenance",
    "TokenScore",
    "TokenSink",
    "count_words",
    "evaluate",
    "prefix_token",
    "top_alternatives",
]
