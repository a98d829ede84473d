"""What :func:`crossent.comparison.compare` returns: the token differences, the KL and
probability statistics, the paired difference, and the JSON shape of each."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from crossent.comparison.aligned import SegmentDifference
    from crossent.evaluation import EvaluationResult
    from crossent.uncertainty import PairedDifference

# How every per-token number of a comparison is named and measured (see crossent.comparison).
KL_NAME = "KL(A || B)"
KL_FORMULA = "KL(A || B) = sum_v p_A(v) ln(p_A(v) / p_B(v))"
TOKEN_UNIT = "nats"

# llama.cpp's --kl-divergence percentiles (its "Median" is p50), by the key crossent writes.
PERCENTILES = {
    "max": 100.0, "p99.9": 99.9, "p99": 99.0, "p95": 95.0, "p90": 90.0, "p50": 50.0,
    "p10": 10.0, "p5": 5.0, "p1": 1.0, "p0.1": 0.1, "min": 0.0,
}  # fmt: skip
# Its Δp percentiles add the quartiles.
DELTA_P_PERCENTILES = {
    "max": 100.0, "p99.9": 99.9, "p99": 99.0, "p95": 95.0, "p90": 90.0, "p75": 75.0,
    "p50": 50.0, "p25": 25.0, "p10": 10.0, "p5": 5.0, "p1": 1.0, "p0.1": 0.1, "min": 0.0,
}  # fmt: skip


@dataclass(frozen=True, slots=True)
class TokenDifference:
    """One token scored by both models (shared tokenizer only).

    Attributes:
        document: index of the document.
        position: index of the token among the document's token ids.
        token_id: the token's id.
        text: the token's text, as in :class:`crossent.evaluation.TokenScore`.
        nats_a: ``-ln p_A(token)``, nats.
        nats_b: ``-ln p_B(token)``, nats.
        kl: ``KL(A || B)`` of the two next-token distributions at this position, nats.
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
class DeltaPSummary:
    """``Δp = p_B(token) - p_A(token)``, the change in the probability of the actual token, as
    llama.cpp's "token probability statistics" (probabilities, not percent).

    Attributes:
        mean: mean Δp.
        mean_se: its standard error.
        percentiles: Δp at llama.cpp's percentiles (:data:`DELTA_P_PERCENTILES`).
        rms: ``sqrt(mean(Δp ** 2))``.
        rms_se: its standard error, ``se(mean(Δp ** 2)) / (2 rms)`` (delta method).
    """

    mean: float
    mean_se: float | None
    percentiles: dict[str, float]
    rms: float
    rms_se: float | None


@dataclass(frozen=True)
class PerplexityRatio:
    """Both models' token perplexity on the compared tokens and their ratio, as llama.cpp's
    "perplexity statistics" (A is its base, B its Q). Every ``*_se`` is one standard error.

    Attributes:
        perplexity_a: ``e ** mean(nats_a)``.
        perplexity_a_se: ``perplexity_a * se(mean(nats_a))``.
        perplexity_b: ``e ** mean(nats_b)``.
        perplexity_b_se: likewise.
        correlation: the correlation of the two mean losses, ``cov / (se_a se_b)`` with
            ``cov = (mean(a b) - mean(a) mean(b)) / (n - 1)``.
        ln_ratio: ``ln(PPL(B) / PPL(A)) = mean(nats_b) - mean(nats_a)``.
        ln_ratio_se: ``sqrt(se_a ** 2 + se_b ** 2 - 2 cov)``: paired over tokens.
        ratio: ``PPL(B) / PPL(A)``.
        ratio_se: ``ratio * ln_ratio_se``.
        difference: ``PPL(B) - PPL(A)``.
        difference_se: ``sqrt(ppl_a_se ** 2 + ppl_b_se ** 2 - 2 ppl_a ppl_b cov)``.
    """

    perplexity_a: float
    perplexity_a_se: float
    perplexity_b: float
    perplexity_b_se: float
    correlation: float | None
    ln_ratio: float
    ln_ratio_se: float
    ratio: float
    ratio_se: float
    difference: float
    difference_se: float


@dataclass(frozen=True)
class KLSummary:
    """The distribution of per-token ``KL(A || B)`` over every compared token, in nats, and
    llama.cpp's other ``--kl-divergence`` statistics.

    Attributes:
        tokens: number of tokens compared.
        mean: mean KL divergence.
        percentiles: KL at llama.cpp's percentiles, keyed ``"max"``, ``"p99.9"``, ``"p99"``,
            ``"p95"``, ``"p90"``, ``"p50"`` (the median), ``"p10"``, ``"p5"``, ``"p1"``,
            ``"p0.1"``, ``"min"`` (:data:`PERCENTILES`; numpy's linear rule, llama.cpp's).
        top1_agreement: fraction of tokens where both models' most likely token is the same
            (llama.cpp's "same top p").
        mean_se: the standard error of ``mean``.
        top1_agreement_se: ``sqrt(p (1 - p) / (n - 1))``.
        delta_p: the change in the actual token's probability.
        perplexity: both perplexities and their ratio, paired over tokens.
    """

    tokens: int
    mean: float
    percentiles: dict[str, float]
    top1_agreement: float
    mean_se: float | None = None
    top1_agreement_se: float | None = None
    delta_p: DeltaPSummary | None = None
    perplexity: PerplexityRatio | None = None


@dataclass(frozen=True)
class ComparisonResult:
    """What :func:`crossent.comparison.compare` measured for two models.

    Attributes:
        a: model A's evaluation (the reference), with per-token details, in its own window.
        b: model B's evaluation, with per-token details, in its own window.
        shared_tokenizer: whether both models tokenized every document to the same ids (then
            ``kl`` and ``largest`` are filled in).
        kl: the per-token KL divergence summary, or None without a shared tokenizer.
        largest: the tokens with the largest ``|nats_b - nats_a|``, largest first.
        differences: every compared token, in document order (shared tokenizer only).
        difference: B's minus A's bits per byte with a paired interval; None when there are
            too few units to pair (one byte block, one token).
        token_window: the window and stride of the token-by-token pass (the smaller of the
            two models' windows, so that both see the same context), or None without one.
        segments: without a shared tokenizer, every stretch of text both models score with
            whole tokens (:mod:`crossent.comparison.aligned`), in document order.
        largest_segments: those with the largest ``|nats_b - nats_a|``, largest first.
    """

    a: EvaluationResult
    b: EvaluationResult
    shared_tokenizer: bool
    kl: KLSummary | None
    largest: list[TokenDifference] = field(default_factory=list)
    differences: list[TokenDifference] = field(default_factory=list)
    difference: PairedDifference | None = None
    token_window: tuple[int, int] | None = None
    segments: list[SegmentDifference] = field(default_factory=list)
    largest_segments: list[SegmentDifference] = field(default_factory=list)

    def pair_dict(self) -> dict[str, Any]:
        """The comparison's own part of the JSON: everything but the two evaluations."""
        return {
            "shared_tokenizer": self.shared_tokenizer,
            "kl_name": KL_NAME,
            "token_unit": TOKEN_UNIT,
            "difference": None if self.difference is None else self.difference.to_dict(),
            "token_window": None
            if self.token_window is None
            else {"window": self.token_window[0], "stride": self.token_window[1]},
            "kl": None if self.kl is None else asdict(self.kl),
            "largest": [asdict(difference) for difference in self.largest],
            "largest_segments": [asdict(segment) for segment in self.largest_segments],
        }

    def to_dict(self) -> dict[str, Any]:
        """The JSON shape of ``crossent compare --json`` for two models (every difference left
        out).

        ``kl_name`` and ``token_unit`` say what ``kl``, ``largest[].kl``, ``largest[].nats_a``
        and ``largest[].nats_b`` are: ``"KL(A || B)"`` and ``"nats"``.
        """
        return {"a": self.a.to_dict(), "b": self.b.to_dict(), **self.pair_dict()}


@dataclass(frozen=True)
class ModelsComparison:
    """Several models on the same texts: each one's evaluation, and the first (the reference)
    compared with each of the others.

    Attributes:
        results: every model's evaluation, in the order given.
        pairs: the reference against each other model, in the order given.
    """

    results: list[EvaluationResult]
    pairs: list[ComparisonResult]

    def ranking(self) -> list[int]:
        """The indices of :attr:`results`, lowest bits per byte first (ties by order given)."""
        return sorted(
            range(len(self.results)),
            key=lambda index: (self.results[index].totals.bits_per_byte or float("inf"), index),
        )

    def to_dict(self) -> dict[str, Any]:
        """The JSON shape of ``crossent compare --json`` for more than two models."""
        return {
            "reference": self.results[0].model,
            "ranking": [self.results[index].model for index in self.ranking()],
            "models": [result.to_dict() for result in self.results],
            "pairs": [
                {"a": pair.a.model, "b": pair.b.model, **pair.pair_dict()} for pair in self.pairs
            ],
        }
