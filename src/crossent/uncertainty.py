"""How sure a cross-entropy number is: standard errors, a bootstrap over documents, and the
paired difference of two models.

The conventions, written once:

* **±** means one standard error everywhere crossent prints it (as llama.cpp's
  ``PPL = x +/- y`` does); intervals are stated as intervals, at 95% unless told otherwise.
* **Per token.** The standard error of the mean token loss ``m`` (nats) over ``n`` scored tokens,
  from their sum ``S`` and sum of squares ``Q`` kept in float64, is llama.cpp's
  (``tools/perplexity/perplexity.cpp``): ``se(m) = sqrt((Q / n - m**2) / (n - 1))``, the sample
  standard deviation over ``sqrt(n)``. It treats tokens as independent draws, which they are
  not quite (neighbouring losses correlate), so it is a lower bound on the real uncertainty;
  the bootstrap over documents is the honest one where there are several documents.
* **Derived units, by the delta method** (a smooth ``f(m)`` has ``se(f) = |f'(m)| se(m)``),
  with the token and byte counts held fixed:

  - bits per token: ``se(m) / ln 2``;
  - perplexity ``e**m``: ``e**m se(m)``, llama.cpp's ``ppl * se``;
  - bits per byte ``n m / (ln 2 B)``: ``n se(m) / (ln 2 B)``;
  - byte perplexity ``e**(n m / B)``: ``e**(n m / B) n se(m) / B``.
* **Per document.** :func:`bootstrap_documents` resamples the documents with replacement and
  recomputes each ratio (summed nats over summed tokens or bytes) on every resample. Resample
  ``r`` draws ``numpy.random.default_rng(seed).integers(0, D, size=D)`` (the same generator,
  one call per resample, in order); the standard error is the replicates' standard deviation
  (``ddof=1``) and the interval their 2.5th and 97.5th percentiles (numpy's linear rule).
* **Paired differences** (:func:`paired_difference`) of bits per byte between two models on the
  same text: per unit ``k`` (a token, a document or a block of bytes) the difference of summed
  nats ``d_k`` (B's minus A's) over ``b_k`` bytes. The difference is ``r = sum d / sum b``
  (over ln 2); its standard error is the ratio estimator's,
  ``sqrt(K / (K - 1) * sum (d_k - r b_k)**2) / sum b``. Over tokens the bytes are held fixed
  instead (``b_k`` taken as their mean), as per token above, which makes it
  ``sqrt(K) * sd(d) / sum b``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from statistics import NormalDist
from typing import Any, Literal

import numpy as np

LN2 = math.log(2.0)
LEVEL = 0.95
DEFAULT_RESAMPLES = 1000
DEFAULT_SEED = 0

PairedOver = Literal["tokens", "documents", "byte blocks"]


def z_value(level: float = LEVEL) -> float:
    """The two-sided normal quantile of ``level``: 1.96 for 0.95.

    Example:
        >>> round(z_value(0.95), 4)
        1.96
    """
    if not 0.0 < level < 1.0:
        raise ValueError(f"the confidence level must be in (0, 1), got {level}")
    return NormalDist().inv_cdf(0.5 + level / 2)


def mean_standard_error(total: float, total_squared: float, count: int) -> float | None:
    """The standard error of a mean from the sum and sum of squares of ``count`` values.

    llama.cpp's formula: ``sqrt((total_squared / count - mean**2) / (count - 1))``, with a
    negative variance (float rounding of a constant series) taken as 0.

    Returns:
        The standard error, or None with fewer than two values.

    Example:
        >>> mean_standard_error(1.0 + 3.0, 1.0 + 9.0, 2)
        1.0
    """
    if count < 2:
        return None
    mean = total / count
    variance = max(total_squared / count - mean * mean, 0.0)
    return math.sqrt(variance / (count - 1))


@dataclass(frozen=True)
class Estimate:
    """A number with its standard error and a two-sided interval.

    Attributes:
        value: the estimate.
        standard_error: one standard error.
        low: the interval's lower end.
        high: the interval's upper end.
        level: the interval's confidence level (0.95).
    """

    value: float
    standard_error: float
    low: float
    high: float
    level: float = LEVEL

    def to_dict(self) -> dict[str, float]:
        """The fields by name, for JSON."""
        return asdict(self)


@dataclass(frozen=True)
class DocumentBootstrap:
    """Each ratio's spread over resamples of the documents (see the module docstring).

    Attributes:
        documents: how many documents were resampled.
        resamples: how many resamples were drawn.
        seed: the seed of ``numpy.random.default_rng``.
        nats_per_token: summed nats over summed tokens.
        bits_per_token: the same in bits.
        perplexity: ``e ** nats_per_token``.
        bits_per_byte: summed nats over ln 2 and summed bytes; None without bytes.
    """

    documents: int
    resamples: int
    seed: int
    nats_per_token: Estimate
    bits_per_token: Estimate
    perplexity: Estimate
    bits_per_byte: Estimate | None

    def to_dict(self) -> dict[str, Any]:
        """The JSON shape: the method, its settings and one estimate per unit."""
        estimates = {
            "nats_per_token": self.nats_per_token,
            "bits_per_token": self.bits_per_token,
            "perplexity": self.perplexity,
            "bits_per_byte": self.bits_per_byte,
        }
        return {
            "method": "bootstrap over documents",
            "documents": self.documents,
            "resamples": self.resamples,
            "seed": self.seed,
            **{key: None if value is None else value.to_dict() for key, value in estimates.items()},
        }


def _replicate_estimate(value: float, replicates: np.ndarray, level: float) -> Estimate:
    low, high = np.percentile(replicates, [50 * (1 - level), 50 * (1 + level)])
    return Estimate(float(value), float(replicates.std(ddof=1)), float(low), float(high), level)


def bootstrap_documents(
    nll_nats: Sequence[float] | np.ndarray,
    tokens: Sequence[int] | np.ndarray,
    num_bytes: Sequence[int] | np.ndarray,
    *,
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = DEFAULT_SEED,
    level: float = LEVEL,
) -> DocumentBootstrap | None:
    """A seeded bootstrap over documents of nats per token, perplexity and bits per byte.

    Args:
        nll_nats: each document's summed negative log-likelihood, nats.
        tokens: each document's scored tokens.
        num_bytes: each document's scored bytes (all 0 when not counted).
        resamples: how many resamples to draw (at least 2).
        seed: the seed of ``numpy.random.default_rng``.
        level: the confidence level of the percentile intervals.

    Returns:
        The estimates, or None with fewer than two documents (nothing to resample). A resample
        that happens to hold no tokens (or no bytes) counts as the full sample's value.

    Raises:
        ValueError: the sequences differ in length, or fewer than 2 resamples.
    """
    if not len(nll_nats) == len(tokens) == len(num_bytes):
        raise ValueError("nll_nats, tokens and num_bytes need one entry per document")
    if resamples < 2:
        raise ValueError(f"the bootstrap needs at least 2 resamples, got {resamples}")
    count = len(nll_nats)
    if count < 2 or sum(tokens) == 0:
        return None
    nll = np.asarray(nll_nats, dtype=np.float64)
    toks = np.asarray(tokens, dtype=np.float64)
    byts = np.asarray(num_bytes, dtype=np.float64)
    rng = np.random.default_rng(seed)
    sums = np.empty((resamples, 3))
    for row in range(resamples):
        drawn = rng.integers(0, count, size=count)
        sums[row] = nll[drawn].sum(), toks[drawn].sum(), byts[drawn].sum()
    total_nll, total_tokens, total_bytes = nll.sum(), toks.sum(), byts.sum()
    per_token = np.divide(
        sums[:, 0], sums[:, 1], out=np.full(resamples, total_nll / total_tokens),
        where=sums[:, 1] > 0,
    )  # fmt: skip
    nats = total_nll / total_tokens
    bits_per_byte = None
    if total_bytes > 0:
        per_byte = np.divide(
            sums[:, 0], sums[:, 2], out=np.full(resamples, total_nll / total_bytes),
            where=sums[:, 2] > 0,
        ) / LN2  # fmt: skip
        bits_per_byte = _replicate_estimate(total_nll / total_bytes / LN2, per_byte, level)
    with np.errstate(over="ignore"):
        perplexities = np.exp(per_token)
    return DocumentBootstrap(
        documents=count,
        resamples=resamples,
        seed=seed,
        nats_per_token=_replicate_estimate(nats, per_token, level),
        bits_per_token=_replicate_estimate(nats / LN2, per_token / LN2, level),
        perplexity=_replicate_estimate(math.exp(nats), perplexities, level),
        bits_per_byte=bits_per_byte,
    )


@dataclass(frozen=True)
class PairedDifference:
    """B's bits per byte minus A's on the same text, with a paired interval.

    Attributes:
        a: the first model's name (the reference).
        b: the second model's name.
        bits_per_byte: B's minus A's bits per byte over the compared bytes; negative when B
            is better.
        standard_error: one standard error of the difference.
        low: the interval's lower end.
        high: the interval's upper end.
        level: the interval's confidence level.
        paired_over: the units paired: "tokens" (shared tokenizer), "documents" or
            "byte blocks".
        units: how many units were paired.
        bytes: the bytes compared.
        block_bytes: the size of a block when paired over byte blocks, else None.
    """

    a: str
    b: str
    bits_per_byte: float
    standard_error: float
    low: float
    high: float
    level: float
    paired_over: PairedOver
    units: int
    bytes: int
    block_bytes: int | None = None

    @property
    def distinguishable(self) -> bool:
        """Whether the interval excludes 0."""
        return self.low > 0 or self.high < 0

    def sentence(self) -> str:
        """The difference in plain words, saying whether it stands out from the noise.

        Example:
            >>> PairedDifference("A", "B", -0.031, 0.004, -0.039, -0.023, 0.95, "tokens",
            ...                  900, 4000).sentence()  # doctest: +NORMALIZE_WHITESPACE
            'B is 0.0310 ± 0.0040 bits/byte better than A (95% interval -0.0390 to -0.0230,
            paired over 900 tokens, excludes 0): the difference is not noise.'
        """
        size = abs(self.bits_per_byte)
        better, worse = (self.b, self.a) if self.bits_per_byte < 0 else (self.a, self.b)
        units = f"{self.units} {self.paired_over}"
        if self.block_bytes is not None:
            units = f"{self.units} blocks of {self.block_bytes} bytes"
        interval = (
            f"{100 * self.level:g}% interval {self.low:.4f} to {self.high:.4f}, paired over {units}"
        )
        if self.distinguishable:
            return (
                f"{better} is {size:.4f} ± {self.standard_error:.4f} bits/byte better than "
                f"{worse} ({interval}, excludes 0): the difference is not noise."
            )
        return (
            f"{self.b} minus {self.a} is {self.bits_per_byte:+.4f} ± {self.standard_error:.4f} "
            f"bits/byte ({interval}, includes 0): not distinguishable from noise."
        )

    def to_dict(self) -> dict[str, Any]:
        """The fields by name and the sentence, for JSON."""
        return {**asdict(self), "distinguishable": self.distinguishable, "text": self.sentence()}


def paired_difference(
    a: str,
    b: str,
    nats_difference: Sequence[float] | np.ndarray,
    num_bytes: Sequence[float] | np.ndarray,
    paired_over: PairedOver,
    *,
    block_bytes: int | None = None,
    level: float = LEVEL,
) -> PairedDifference:
    """B's minus A's bits per byte from per-unit differences of summed nats.

    Args:
        a: the reference model's name.
        b: the other model's name.
        nats_difference: per unit, B's summed nats minus A's.
        num_bytes: per unit, the bytes it covers.
        paired_over: what a unit is; over "tokens" the bytes are held fixed, otherwise the
            ratio estimator's standard error is used (see the module docstring).
        block_bytes: the block size, recorded when pairing over byte blocks.
        level: the confidence level of the normal interval.

    Raises:
        ValueError: fewer than two units, the sequences differ in length, or no bytes.
    """
    diff = np.asarray(nats_difference, dtype=np.float64)
    byts = np.asarray(num_bytes, dtype=np.float64)
    if diff.shape != byts.shape or diff.ndim != 1:
        raise ValueError("nats_difference and num_bytes need one entry per unit")
    count = diff.shape[0]
    total_bytes = float(byts.sum())
    if count < 2 or total_bytes <= 0:
        raise ValueError(
            f"a paired interval needs at least 2 {paired_over} and some bytes, "
            f"got {count} and {total_bytes:g} bytes"
        )
    ratio = float(diff.sum()) / total_bytes
    # Over tokens the bytes are held fixed; otherwise each unit's own bytes scale the ratio.
    residual = diff - diff.mean() if paired_over == "tokens" else diff - ratio * byts
    spread = math.sqrt(count / (count - 1) * float((residual * residual).sum())) / total_bytes
    value, error = ratio / LN2, spread / LN2
    half = z_value(level) * error
    return PairedDifference(
        a, b, value, error, value - half, value + half, level, paired_over, count,
        round(total_bytes), block_bytes,
    )  # fmt: skip
