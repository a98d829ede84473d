"""The numbers a comparison derives from per-token losses: llama.cpp's ``--kl-divergence``
statistics, and B's minus A's bits per byte with a paired interval.

**Pairing** (:func:`paired_bits_per_byte`). With a shared tokenizer the units are the tokens:
each token's loss under B minus its loss under A, each from the model's own evaluation (its own
window). Across tokenizers there is no common token, so the units are stretches of the text's
bytes, each model's loss put on bytes by spreading every token's nats evenly over the bytes it
covers (:func:`byte_surprisal`):

* with at least :data:`MIN_DOCUMENTS` documents, each document is a unit: the natural unit of a
  corpus, and losses correlate within a document far more than across documents;
* with fewer, the text is cut into blocks of ``block_bytes`` bytes (default
  :data:`DEFAULT_BLOCK_BYTES`, about 250 tokens of English text: long enough that neighbouring
  blocks' losses are nearly independent, short enough for tens of blocks in a few pages); each
  document is cut from its first byte on, so no block spans two documents, and a document's
  last block may be shorter.

Only bytes that both models scored are paired (without a prefix token each model leaves its own
first token unscored), so with ``prefix="none"`` the paired difference can differ slightly from
the difference of the two headline numbers. The interval is
:func:`crossent.uncertainty.paired_difference`'s.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from crossent.comparison.records import (
    DELTA_P_PERCENTILES,
    PERCENTILES,
    DeltaPSummary,
    KLSummary,
    PerplexityRatio,
    TokenDifference,
)
from crossent.uncertainty import PairedDifference, mean_standard_error, paired_difference

if TYPE_CHECKING:
    from crossent.evaluation import EvaluationResult

MIN_DOCUMENTS = 20
DEFAULT_BLOCK_BYTES = 1024


def _percentiles(values: np.ndarray, keys: dict[str, float]) -> dict[str, float]:
    found = np.percentile(values, list(keys.values()))
    return {name: float(value) for name, value in zip(keys, found, strict=True)}


def _mean_se(values: np.ndarray) -> float | None:
    return mean_standard_error(float(values.sum()), float((values * values).sum()), len(values))


def kl_summary(differences: Sequence[TokenDifference]) -> KLSummary:
    """llama.cpp's ``--kl-divergence`` statistics of the compared tokens, in float64.

    Each mean's standard error is :func:`crossent.uncertainty.mean_standard_error` (llama.cpp
    reports 0 below 11 tokens; crossent from 2 on). Δp is ``p_B(token) - p_A(token)``.

    Raises:
        ValueError: no tokens were compared.
    """
    count = len(differences)
    if count == 0:
        raise ValueError("no tokens were compared, so there is no KL divergence to summarise")
    kl = np.array([d.kl for d in differences], dtype=np.float64)
    nats_a = np.array([d.nats_a for d in differences], dtype=np.float64)
    nats_b = np.array([d.nats_b for d in differences], dtype=np.float64)
    same = sum(d.top_a == d.top_b for d in differences) / count
    delta = np.exp(-nats_b) - np.exp(-nats_a)
    squared = delta * delta
    rms = math.sqrt(float(squared.mean()))
    squared_se = mean_standard_error(float(squared.sum()), float((squared**2).sum()), count)
    return KLSummary(
        tokens=count,
        mean=float(kl.mean()),
        percentiles=_percentiles(kl, PERCENTILES),
        top1_agreement=same,
        mean_se=_mean_se(kl),
        top1_agreement_se=math.sqrt(same * (1 - same) / (count - 1)) if count > 1 else None,
        delta_p=DeltaPSummary(
            mean=float(delta.mean()),
            mean_se=_mean_se(delta),
            percentiles=_percentiles(delta, DELTA_P_PERCENTILES),
            rms=rms,
            rms_se=None if squared_se is None or rms == 0 else squared_se / (2 * rms),
        ),
        perplexity=_perplexity_ratio(nats_a, nats_b),
    )


def _perplexity_ratio(nats_a: np.ndarray, nats_b: np.ndarray) -> PerplexityRatio | None:
    """Both perplexities and their ratio, with the covariance of the two mean losses."""
    count = len(nats_a)
    se_a, se_b = _mean_se(nats_a), _mean_se(nats_b)
    if se_a is None or se_b is None:
        return None
    mean_a, mean_b = float(nats_a.mean()), float(nats_b.mean())
    covariance = (float((nats_a * nats_b).mean()) - mean_a * mean_b) / (count - 1)
    ppl_a, ppl_b = math.exp(mean_a), math.exp(mean_b)
    ln_ratio_se = math.sqrt(max(se_a**2 + se_b**2 - 2 * covariance, 0.0))
    ratio = math.exp(mean_b - mean_a)
    return PerplexityRatio(
        perplexity_a=ppl_a,
        perplexity_a_se=ppl_a * se_a,
        perplexity_b=ppl_b,
        perplexity_b_se=ppl_b * se_b,
        correlation=covariance / (se_a * se_b) if se_a > 0 and se_b > 0 else None,
        ln_ratio=mean_b - mean_a,
        ln_ratio_se=ln_ratio_se,
        ratio=ratio,
        ratio_se=ratio * ln_ratio_se,
        difference=ppl_b - ppl_a,
        difference_se=math.sqrt(
            max((ppl_a * se_a) ** 2 + (ppl_b * se_b) ** 2 - 2 * ppl_a * ppl_b * covariance, 0.0)
        ),
    )


def byte_surprisal(result: EvaluationResult) -> list[np.ndarray]:
    """Each document's loss on its bytes: every scored token's nats spread evenly over the bytes
    it covers, NaN on bytes no token scored (the first token's without a prefix).

    A token that covers no byte of its own (the second token of a character split across two)
    adds its nats to the byte before it. Needs ``result.tokens`` (per-token details), in
    document order, each document's tokens consecutive from its first scored one.

    Returns:
        One float64 array per document, as long as the bytes it covers.
    """
    tokens: list[list[tuple[float, int]]] = [[] for _ in result.documents]
    for token in result.tokens:
        tokens[token.document].append((token.nats, token.num_bytes))
    arrays = []
    for document, own in zip(result.documents, tokens, strict=True):
        surprisal = np.full(document.unscored_bytes + sum(size for _, size in own), np.nan)
        offset = document.unscored_bytes
        for nats, size in own:
            if size:
                surprisal[offset : offset + size] = nats / size
            elif offset > document.unscored_bytes:
                surprisal[offset - 1] += nats
            offset += size
        arrays.append(surprisal)
    return arrays


def paired_bits_per_byte(
    a: EvaluationResult,
    b: EvaluationResult,
    *,
    shared_tokenizer: bool,
    block_bytes: int = DEFAULT_BLOCK_BYTES,
) -> PairedDifference | None:
    """B's minus A's bits per byte, paired as the module docstring says.

    Args:
        a: the reference's evaluation, with per-token details.
        b: the other model's, on the same documents.
        shared_tokenizer: pair over tokens (both scored the same token ids).
        block_bytes: the block size when pairing over byte blocks.

    Returns:
        The difference and its interval, or None with fewer than two units to pair.

    Raises:
        ValueError: ``block_bytes`` is not positive.
    """
    if block_bytes < 1:
        raise ValueError(f"block_bytes must be positive, got {block_bytes}")
    if shared_tokenizer:
        nats_b = {(token.document, token.position): token.nats for token in b.tokens}
        change = [nats_b[(t.document, t.position)] - t.nats for t in a.tokens]
        if len(change) < 2:
            return None
        sizes = [token.num_bytes for token in a.tokens]
        return paired_difference(a.model, b.model, change, sizes, "tokens")
    by_document = len(a.documents) >= MIN_DOCUMENTS
    changes: list[float] = []
    sizes = []
    for on_a, on_b in zip(byte_surprisal(a), byte_surprisal(b), strict=True):
        length = min(len(on_a), len(on_b))
        step = length if by_document else block_bytes
        for start in range(0, length, max(step, 1)):
            piece_a, piece_b = on_a[start : start + step], on_b[start : start + step]
            both = ~(np.isnan(piece_a) | np.isnan(piece_b))
            if both.any():
                changes.append(float(piece_b[both].sum() - piece_a[both].sum()))
                sizes.append(int(both.sum()))
    if len(changes) < 2:
        return None
    if by_document:
        return paired_difference(a.model, b.model, changes, sizes, "documents")
    return paired_difference(
        a.model, b.model, changes, sizes, "byte blocks", block_bytes=block_bytes
    )
