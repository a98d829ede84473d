"""Units of cross-entropy, and a mergeable meter that sums negative log-likelihood.

Conventions (the one place they are written down):

* **Nats in, everything else derived.** Every negative log-likelihood (NLL) this module receives
  or stores is in nats (natural log), as every loss in :mod:`crossent.losses` and PyTorch's
  ``cross_entropy`` are. One bit is ``ln 2`` nats, so ``bits = nats / ln 2``.
* **Token perplexity** is ``e ** (nats per token)``, which equals ``2 ** (bits per token)``. Texts
  that write "perplexity = 2^cross-entropy" measure cross-entropy in bits; code that writes
  ``torch.exp(loss)`` has it in nats. Both are the same number.
* **Bytes and words** follow lm-evaluation-harness, from the summed NLL of a text (not the mean
  over tokens):

  - ``bits_per_byte = total_nats / (ln 2 * bytes)``
  - ``byte_perplexity = e ** (total_nats / bytes)``
  - ``word_perplexity = e ** (total_nats / words)``

  How bytes and words are counted is the caller's convention (the data pipeline's), not this
  module's: these functions only divide.
* **Overflow.** A perplexity too large for a float is ``inf``, never an ``OverflowError``.
* **Accumulation.** :class:`NLLMeter` sums NLL as a Python float (float64) and counts as Python
  ints, whatever the dtype of the tensors it is fed, so a long evaluation in bf16 loses nothing
  in the sum.
* **Standard errors.** The meter also sums squared per-token losses, so :class:`NLLResult`
  carries standard errors (formulas in :mod:`crossent.uncertainty`, llama.cpp's among them); a
  meter fed only sums over several tokens does not know the squares, and its errors are None.
"""

from __future__ import annotations

import math
import operator
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from crossent.distributed import all_sum_floats, is_initialized
from crossent.failures import NonFiniteLossError
from crossent.uncertainty import mean_standard_error

if TYPE_CHECKING:
    from torch.distributed import ProcessGroup

LN2 = math.log(2.0)


def nats_to_bits(x: float) -> float:
    """Converts an information quantity from nats to bits.

    Args:
        x: a quantity in nats (natural log).

    Returns:
        The same quantity in bits: ``x / ln 2``.

    Example:
        >>> round(nats_to_bits(math.log(8.0)), 12)
        3.0
    """
    return x / LN2


def bits_to_nats(x: float) -> float:
    """Converts an information quantity from bits to nats.

    Args:
        x: a quantity in bits (log base 2).

    Returns:
        The same quantity in nats: ``x * ln 2``.

    Example:
        >>> bits_to_nats(1.0) == math.log(2.0)
        True
    """
    return x * LN2


def _exp(x: float) -> float:
    try:
        return math.exp(x)
    except OverflowError:
        return math.inf


def perplexity(nats_per_token: float) -> float:
    """Token perplexity from the mean NLL per token in nats.

    Args:
        nats_per_token: mean negative log-likelihood per token, in nats (PyTorch's
            ``cross_entropy`` with ``reduction="mean"``).

    Returns:
        ``e ** nats_per_token``; ``inf`` when that overflows a float.

    Example:
        >>> round(perplexity(math.log(50257.0)), 6)  # uniform over GPT-2's vocabulary
        50257.0
    """
    return _exp(nats_per_token)


def perplexity_from_bits(bits: float) -> float:
    """Token perplexity from the mean NLL per token in bits.

    Args:
        bits: mean negative log-likelihood per token, in bits.

    Returns:
        ``2 ** bits``; ``inf`` when that overflows a float. Equal to
        ``perplexity(bits_to_nats(bits))`` up to rounding.

    Example:
        >>> perplexity_from_bits(3.0)
        8.0
    """
    try:
        return math.pow(2.0, bits)
    except OverflowError:
        return math.inf


def _check_divisor(value: int, what: str, unit: str) -> None:
    if value <= 0:
        raise ValueError(f"{what} needs at least one {unit}, got {value}")


def bits_per_byte(total_nats: float, num_bytes: int) -> float:
    """Bits per byte of a text, as lm-evaluation-harness defines it.

    Args:
        total_nats: summed negative log-likelihood of the text, in nats.
        num_bytes: length of the text in bytes (UTF-8 unless the caller says otherwise).

    Returns:
        ``total_nats / (ln 2 * num_bytes)``, in bits per byte.

    Raises:
        ValueError: ``num_bytes`` is not positive.

    Example:
        >>> round(bits_per_byte(4 * math.log(2.0), 2), 12)
        2.0
    """
    _check_divisor(num_bytes, "bits per byte", "byte")
    return total_nats / (LN2 * num_bytes)


def byte_perplexity(total_nats: float, num_bytes: int) -> float:
    """Byte perplexity of a text, as lm-evaluation-harness defines it.

    Args:
        total_nats: summed negative log-likelihood of the text, in nats.
        num_bytes: length of the text in bytes.

    Returns:
        ``e ** (total_nats / num_bytes)``; ``inf`` when that overflows a float.

    Raises:
        ValueError: ``num_bytes`` is not positive.

    Example:
        >>> round(byte_perplexity(3 * math.log(2.0), 3), 12)
        2.0
    """
    _check_divisor(num_bytes, "byte perplexity", "byte")
    return _exp(total_nats / num_bytes)


def word_perplexity(total_nats: float, num_words: int) -> float:
    """Word perplexity of a text, as lm-evaluation-harness defines it.

    Args:
        total_nats: summed negative log-likelihood of the text, in nats.
        num_words: number of words in the text.

    Returns:
        ``e ** (total_nats / num_words)``; ``inf`` when that overflows a float.

    Raises:
        ValueError: ``num_words`` is not positive.

    Example:
        >>> round(word_perplexity(2 * math.log(10.0), 2), 12)
        10.0
    """
    _check_divisor(num_words, "word perplexity", "word")
    return _exp(total_nats / num_words)


@dataclass(frozen=True)
class NLLResult:
    """Totals of an evaluation and every unit derived from them.

    Attributes:
        tokens: number of scored tokens.
        bytes: number of bytes the scored text spans (0 when not counted).
        words: number of words the scored text spans (0 when not counted).
        nll_nats: summed negative log-likelihood, in nats.
        correct: number of scored tokens whose target was the top-1 prediction.
        nats_per_token: ``nll_nats / tokens``.
        bits_per_token: ``nats_per_token / ln 2``.
        perplexity: token perplexity, ``e ** nats_per_token``.
        accuracy: ``correct / tokens``, in [0, 1].
        bits_per_byte: ``nll_nats / (ln 2 * bytes)``; None when ``bytes`` is 0.
        byte_perplexity: ``e ** (nll_nats / bytes)``; None when ``bytes`` is 0.
        word_perplexity: ``e ** (nll_nats / words)``; None when ``words`` is 0.
        nats_per_token_se: the standard error of ``nats_per_token``; None with fewer than two
            tokens or when the squares of the losses are not known.
        bits_per_token_se: ``nats_per_token_se / ln 2``.
        perplexity_se: ``perplexity * nats_per_token_se`` (delta method).
        bits_per_byte_se: ``tokens * nats_per_token_se / (ln 2 * bytes)`` (delta method, the
            byte count held fixed); None also when ``bytes`` is 0.
    """

    tokens: int
    bytes: int
    words: int
    nll_nats: float
    correct: int
    nats_per_token: float
    bits_per_token: float
    perplexity: float
    accuracy: float
    bits_per_byte: float | None
    byte_perplexity: float | None
    word_perplexity: float | None
    nats_per_token_se: float | None = None
    bits_per_token_se: float | None = None
    perplexity_se: float | None = None
    bits_per_byte_se: float | None = None

    def to_dict(self) -> dict[str, float | int | None]:
        """The fields by name, ready for JSON (``inf`` aside, which ``json`` writes as Infinity)."""
        return asdict(self)


def _nll_sum(value: float | Tensor) -> float:
    if isinstance(value, Tensor):
        if not torch.is_floating_point(value):
            raise TypeError(f"nll_nats must be a floating-point tensor, got dtype {value.dtype}")
        total = value.detach().sum(dtype=torch.float64).item()
    else:
        total = float(value)
    if math.isnan(total):
        raise NonFiniteLossError("nll_nats is NaN: the loss diverged or read bad input")
    return total


def _squares(value: float | Tensor, tokens: int, given: float | None) -> float | None:
    """The batch's sum of squared per-token losses, when it can be known."""
    if given is not None:
        return float(given)
    if isinstance(value, Tensor) and value.numel() >= tokens:
        return value.detach().double().square().sum().item()
    if tokens <= 1:  # one token's square is the square of the sum
        return float(value) ** 2
    return None


def _plus(left: float | None, right: float | None) -> float | None:
    return None if left is None or right is None else left + right


def _count(name: str, value: int | Tensor) -> int:
    if isinstance(value, Tensor):
        if torch.is_floating_point(value) or torch.is_complex(value):
            raise TypeError(f"{name} must be an integer or bool tensor, got dtype {value.dtype}")
        count = int(value.detach().sum(dtype=torch.int64).item())
    else:
        count = operator.index(value)
    if count < 0:
        raise ValueError(f"{name} must be non-negative, got {count}")
    return count


@dataclass
class NLLMeter:
    """Sums negative log-likelihood and counts over batches, processes and machines.

    Meters add: feed batches with :meth:`update`, combine meters with :meth:`merge` or across a
    process group with :meth:`all_reduce`, and read the units with :meth:`result`. The order in
    which batches arrive changes the NLL sum only by float64 rounding.

    Attributes:
        nll_nats: summed negative log-likelihood, in nats.
        tokens: number of scored tokens.
        bytes: number of bytes the scored text spans.
        words: number of words the scored text spans.
        correct: number of scored tokens whose target was the top-1 prediction.
        nll_squared: summed squares of the per-token losses, nats squared, for the standard
            errors; None when some update gave only a sum over several tokens. A meter made
            empty knows it (0.0); one made from totals alone does not.

    Example:
        >>> meter = NLLMeter()
        >>> meter.update(torch.tensor([0.5, 1.5]), 2, bytes=8, correct=1)
        >>> meter.update(2.0, 2, bytes=8, correct=2)
        >>> result = meter.result()
        >>> result.nats_per_token, result.accuracy, round(result.bits_per_byte, 6)
        (1.0, 0.75, 0.360674)
    """

    nll_nats: float = 0.0
    tokens: int = 0
    bytes: int = 0
    words: int = 0
    correct: int = 0
    nll_squared: float | None = None

    def __post_init__(self) -> None:
        if self.nll_squared is None and self.tokens == 0 and self.nll_nats == 0.0:
            self.nll_squared = 0.0

    def update(
        self,
        nll_nats: float | Tensor,
        tokens: int | Tensor,
        *,
        bytes: int = 0,
        words: int = 0,
        correct: int | Tensor = 0,
        nll_squared: float | None = None,
    ) -> None:
        """Adds one batch.

        Args:
            nll_nats: the batch's negative log-likelihood in nats: a float, or a tensor of any
                shape and floating dtype, summed in float64 (per-token losses with ignored tokens
                set to 0, or a ``reduction="sum"`` loss). Not a mean: multiply a mean by the token
                count first.
            tokens: number of scored tokens, an int or an integer/bool tensor that is summed (a
                mask of scored positions works as is).
            bytes: number of bytes the batch's scored text spans.
            words: number of words the batch's scored text spans.
            correct: number of scored tokens predicted top-1, an int or an integer/bool tensor
                that is summed.
            nll_squared: the batch's summed squared per-token losses. None: the squares of a
                tensor's elements when it holds at least ``tokens`` elements (per-token losses,
                ignored ones 0), the square of a one-token batch's loss, else unknown (the
                meter's standard errors become None).

        Raises:
            ValueError: a count is negative, ``correct`` exceeds ``tokens``, or ``nll_nats`` is NaN.
            TypeError: a count is not an integer, or ``nll_nats`` is not a floating tensor.
        """
        batch_nll = _nll_sum(nll_nats)
        batch_tokens = _count("tokens", tokens)
        batch_bytes = _count("bytes", bytes)
        batch_words = _count("words", words)
        batch_correct = _count("correct", correct)
        if batch_correct > batch_tokens:
            raise ValueError(
                f"correct ({batch_correct}) cannot exceed tokens ({batch_tokens}) in one update"
            )
        self.nll_squared = _plus(self.nll_squared, _squares(nll_nats, batch_tokens, nll_squared))
        self.nll_nats += batch_nll
        self.tokens += batch_tokens
        self.bytes += batch_bytes
        self.words += batch_words
        self.correct += batch_correct

    def merge(self, other: NLLMeter) -> NLLMeter:
        """Adds another meter's totals into this one (``other`` is unchanged).

        Returns:
            This meter, so that ``total = NLLMeter().merge(a).merge(b)`` reads naturally.
        """
        self.nll_squared = _plus(self.nll_squared, other.nll_squared)
        self.nll_nats += other.nll_nats
        self.tokens += other.tokens
        self.bytes += other.bytes
        self.words += other.words
        self.correct += other.correct
        return self

    def all_reduce(self, group: ProcessGroup | None = None) -> NLLMeter:
        """Replaces this meter's totals by their sum over every process in ``group``.

        Every process must call it (it is a collective). The six totals travel in one float64
        tensor through :func:`crossent.distributed.all_sum_floats` (on the current CUDA device
        when the group's backend is NCCL, on the CPU otherwise); counts stay exact while every
        total is below 2**53.

        Args:
            group: the process group; None means the default (world) group.

        Returns:
            This meter, now holding the group's totals on every process.

        Raises:
            RuntimeError: ``torch.distributed`` is unavailable or not initialised.
        """
        if not is_initialized():
            raise RuntimeError(
                "NLLMeter.all_reduce needs an initialised torch.distributed process group; call "
                "torch.distributed.init_process_group first, or skip all_reduce in a single process"
            )
        # An unknown sum of squares travels as NaN, so that it stays unknown in the total.
        squares = math.nan if self.nll_squared is None else self.nll_squared
        totals = [self.nll_nats, self.tokens, self.bytes, self.words, self.correct, squares]
        [summed] = all_sum_floats([totals], group)
        nll, tokens, num_bytes, words, correct, squared = summed
        self.nll_squared = None if math.isnan(squared) else squared
        self.nll_nats = nll
        self.tokens = int(tokens)
        self.bytes = int(num_bytes)
        self.words = int(words)
        self.correct = int(correct)
        return self

    def result(self) -> NLLResult:
        """The totals and every unit derived from them (see the module docstring).

        Raises:
            ValueError: no tokens were scored, so no per-token unit is defined.
        """
        if self.tokens == 0:
            raise ValueError(
                "no tokens were scored, so per-token units are undefined; "
                "check that update() was called with a non-zero token count"
            )
        nats_per_token = self.nll_nats / self.tokens
        se = (
            None
            if self.nll_squared is None
            else mean_standard_error(self.nll_nats, self.nll_squared, self.tokens)
        )
        return NLLResult(
            tokens=self.tokens,
            bytes=self.bytes,
            words=self.words,
            nll_nats=self.nll_nats,
            correct=self.correct,
            nats_per_token=nats_per_token,
            bits_per_token=nats_to_bits(nats_per_token),
            perplexity=perplexity(nats_per_token),
            accuracy=self.correct / self.tokens,
            bits_per_byte=bits_per_byte(self.nll_nats, self.bytes) if self.bytes else None,
            byte_perplexity=byte_perplexity(self.nll_nats, self.bytes) if self.bytes else None,
            word_perplexity=word_perplexity(self.nll_nats, self.words) if self.words else None,
            nats_per_token_se=se,
            bits_per_token_se=None if se is None else nats_to_bits(se),
            perplexity_se=None if se is None else perplexity(nats_per_token) * se,
            bits_per_byte_se=bits_per_byte(self.tokens * se, self.bytes)
            if se is not None and self.bytes
            else None,
        )
