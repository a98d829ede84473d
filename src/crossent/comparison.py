"""Compare two causal language models on the same texts.

Bits per byte is the headline: it divides by the text's bytes, not by tokens, so it is comparable
across tokenizers where token perplexity is not. When the two models share a tokenizer, every
token is also compared position by position, as llama.cpp's perplexity tool does for a quantised
model against its original: the KL divergence ``KL(P_A || P_B)`` of B's next-token distribution
from A's, whether the two agree on the top-1 token, and the tokens whose loss changed most.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from crossent.evaluation import EvaluationResult


@dataclass(frozen=True, slots=True)
class TokenDifference:
    """One token scored by both models (shared tokenizer only).

    Attributes:
        document: index of the document.
        position: index of the token among the document's token ids.
        token_id: the token's id.
        text: the token's text, as in :class:`crossent.evaluation.TokenScore`.
        nats_a: ``-ln p_A(token)``.
        nats_b: ``-ln p_B(token)``.
        kl: ``KL(P_A || P_B)`` of the two next-token distributions at this position, nats.
        top_a: A's most likely token id.
        top_b: B's most likely token id.
    """

    document: int
    position: int
    token_id: int
    text: str
    nats_a: float
    nats_b: float
    kl: float
    top_a: int
    top_b: int


@dataclass(frozen=True)
class KLSummary:
    """The distribution of per-token ``KL(P_A || P_B)`` over every scored token, in nats.

    Attributes:
        tokens: number of tokens compared.
        mean: mean KL divergence.
        percentiles: KL at the 50th, 90th, 95th, 99th and 99.9th percentile and the maximum,
            keyed ``"p50"``, ``"p90"``, ``"p95"``, ``"p99"``, ``"p99.9"``, ``"max"``.
        top1_agreement: fraction of tokens where both models' most likely token is the same.
    """

    tokens: int
    mean: float
    percentiles: dict[str, float]
    top1_agreement: float


@dataclass(frozen=True)
class ComparisonResult:
    """What :func:`compare` measured.

    Attributes:
        a: model A's evaluation, with per-token details.
        b: model B's evaluation, with per-token details.
        shared_tokenizer: whether both models tokenized every document to the same ids (then
            ``kl`` and ``largest`` are filled in).
        kl: the per-token KL divergence summary, or None without a shared tokenizer.
        largest: the tokens with the largest ``|nats_b - nats_a|``, largest first.
        differences: every compared token, in document order (shared tokenizer only).
    """

    a: EvaluationResult
    b: EvaluationResult
    shared_tokenizer: bool
    kl: KLSummary | None
    largest: list[TokenDifference] = field(default_factory=list)
    differences: list[TokenDifference] = field(default_factory=list)
