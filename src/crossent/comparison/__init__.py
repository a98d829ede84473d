"""Compare causal language models on the same texts.

Bits per byte is the headline: it divides by the text's bytes, not by tokens, so it is comparable
across tokenizers where token perplexity is not. Each model is evaluated in its own window (its
own context, at most 2048), as ``crossent eval`` would; the first model given is the reference,
A, and every other, B, is compared with it: B's minus A's bits per byte with a paired 95%
interval and a sentence saying whether the difference stands out from the noise
(:mod:`crossent.comparison.statistics`, :mod:`crossent.uncertainty`). When the two share a
tokenizer, every token is also compared position by position, as llama.cpp's perplexity tool
does for a quantised model against its original: the KL divergence, whether the two agree on the
top-1 token, the change in the actual token's probability, the ratio of perplexities, and the
tokens whose loss changed most.

One name, one direction and one unit for every per-token number, in the terminal, the JSON and
the page: A is the reference (for a quantised model, the original; llama.cpp's "base", B its
"Q"), and the divergence is ``KL(A || B) = sum_v p_A(v) ln(p_A(v) / p_B(v))`` over the whole
vocabulary at each position, llama.cpp's direction: the expected extra surprise, under A's
distribution, of predicting with B's. It and each token's loss (``-ln p``) and change in loss
(B's minus A's) are in nats, as every crossent loss is and as llama.cpp reports its KL
statistics; only the per-byte headline and its difference are in bits (bits per byte).

:mod:`crossent.comparison.run` runs a comparison, :mod:`crossent.comparison.statistics` derives
its numbers, :mod:`crossent.comparison.aligned` lines up models with different tokenizers on the
same characters, :mod:`crossent.comparison.records` holds the results.
"""

from crossent.comparison.aligned import SegmentDifference, aligned_segments
from crossent.comparison.records import (
    DELTA_P_PERCENTILES,
    KL_FORMULA,
    KL_NAME,
    PERCENTILES,
    TOKEN_UNIT,
    ComparisonResult,
    DeltaPSummary,
    KLSummary,
    ModelsComparison,
    PerplexityRatio,
    TokenDifference,
)
from crossent.comparison.run import compare, compare_models
from crossent.comparison.statistics import (
    DEFAULT_BLOCK_BYTES,
    MIN_DOCUMENTS,
    byte_surprisal,
    kl_summary,
    paired_bits_per_byte,
)

__all__ = [
    "DEFAULT_BLOCK_BYTES",
    "DELTA_P_PERCENTILES",
    "KL_FORMULA",
    "KL_NAME",
    "MIN_DOCUMENTS",
    "PERCENTILES",
    "TOKEN_UNIT",
    "ComparisonResult",
    "DeltaPSummary",
    "KLSummary",
    "ModelsComparison",
    "PerplexityRatio",
    "SegmentDifference",
    "TokenDifference",
    "aligned_segments",
    "byte_surprisal",
    "compare",
    "compare_models",
    "kl_summary",
    "paired_bits_per_byte",
]
