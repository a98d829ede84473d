"""Which token is scored where, by each tool's convention: the numbers people compare against.

A perplexity is only comparable with another made the same way. crossent reproduces three ways,
each written once here (``lm-eval`` in :mod:`crossent.data.windows`) and named in every output
(:meth:`crossent.evaluation.EvaluationResult.convention_block`). ``P`` is a document's token
ids, preceded by the prefix token when there is one; ``L`` is the window, ``S`` the stride.

``lm-eval`` (the default)
    lm-evaluation-harness's rolling log-likelihood, :mod:`crossent.data.windows`: every token
    scored exactly once, the prefix BOS (else EOS) by default.

``llama.cpp``
    ``llama-perplexity`` as ``tools/perplexity/perplexity.cpp`` computes it (its default mode,
    without ``--ppl-stride``):

    1. The text is tokenized whole, with BOS in front when the model's tokenizer adds one (by
       default the prefix is BOS when the tokenizer adds it, else none; SmolLM2's does not).
    2. ``P`` is cut into ``len(P) // L`` non-overlapping chunks of ``L`` tokens (``n_ctx``);
       the tail after the last whole chunk is never read.
    3. Each chunk is one forward pass, its first token *replaced* (not preceded) by the prefix
       token when there is one; the first chunk's first token is already that token.
    4. Only the logits at chunk positions ``L // 2, ..., L - 2`` are used: they score the chunk's
       tokens at positions ``L // 2 + 1, ..., L - 1``, ``L - 1 - L // 2`` tokens per chunk (255
       of 512). The first half is context only, so every scored token sees at least ``L // 2``
       tokens.
    5. Perplexity is ``e ** (mean nats)`` over all scored tokens, and ``PPL = x +/- y`` has
       ``y = x * sqrt((mean(v ** 2) - mean(v) ** 2) / (N - 1))`` over the ``N`` scored losses
       ``v`` (:func:`llama_cpp_uncertainty`): the standard error of the mean loss, carried to
       perplexity to first order.

    ``llama-perplexity`` refuses a text of fewer than ``2 L`` tokens; crossent scores any
    document with one whole chunk and refuses one with none. A stride does not apply (chunks
    never overlap) and ``L`` must be at least 3 (below that no token is scored).

``hf-stride``
    The code of the Transformers guide "Perplexity of fixed-length models" (``docs/source/en/
    perplexity.md``, the version that accumulates ``nll_sum`` and ``n_tokens`` and subtracts
    ``batch_size`` for the label shift, current in 2025-2026), run on ``P``:

    1. ``P`` is what ``tokenizer(text)`` gives: the prefix is BOS when the tokenizer adds it,
       else none (GPT-2 and SmolLM2 add none, so the first token is never scored).
    2. Windows ``P[b : e]`` with ``b = 0, S, 2S, ...`` and ``e = min(b + L, len(P))``, until
       the first window that reaches the end; the last is shorter, not aligned to the end.
    3. Labels are masked (-100) except the last ``trg_len = e - e_prev`` of each window
       (``e_prev`` the previous window's end, 0 at first). The model shifts labels by one, so
       the label at window position 0 is never predicted: with ``S = L`` every window's first
       token (and the text's first) is left unscored.
    4. The window's mean loss over its predicted labels is weighted by ``trg_len - 1``
       ("subtract batch_size due to internal label shift") and the perplexity is
       ``e ** (sum of weighted means / sum of (trg_len - 1))``. For the first window and for
       every window at ``S = L`` that is one per token; for a later window at ``S < L``, whose
       ``trg_len`` labels are all predicted, each token weighs ``(trg_len - 1) / trg_len``.
       crossent's totals carry exactly this: :attr:`crossent.data.Window.counted` is
       ``trg_len - 1`` and the token count is the guide's ``n_tokens``.

    One deviation: where ``len(P)`` is one more than a multiple of ``L`` at ``S = L``, the
    guide's last window holds one token and no predicted label, and its code averages an empty
    loss into NaN; crossent leaves that window out. ``L`` must be at least 2.

**Several documents.** llama.cpp and the guide read one text (the guide joins its dataset with
``"\\n\\n"`` first). crossent applies each convention to each document separately, as it does
for ``lm-eval``: documents stay independent (no chunk's context runs from one into the next,
and no result depends on their order) and each keeps its own row. For one document, as both
tools have, the numbers are theirs; to reproduce a run over a joined corpus, join the texts
into one document first.

**Bytes and words.** Bits per byte divides the nats of the scored tokens by the bytes those
tokens cover (:class:`crossent.data.counts.SparseCount`). Words are counted under ``lm-eval``
only (word perplexity is lm-eval's unit; neither other tool has it).

>>> [(w.tokens, w.targets, w.score_from) for w in llama_cpp_windows(range(10, 19), 0, window=4)]
[([0, 10, 11], [10, 11, 12], 2), ([0, 14, 15], [14, 15, 16], 2)]
>>> [(w.score_from, w.counted) for w in hf_stride_windows(range(10, 17), None, 4, 2)]
[(0, 3), (1, 1), (1, 0)]
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from crossent.data.windows import Window, check_window, iter_windows

if TYPE_CHECKING:
    from crossent.models.protocol import Tokenizer

Convention = Literal["lm-eval", "llama.cpp", "hf-stride"]
CONVENTIONS: tuple[Convention, ...] = ("lm-eval", "llama.cpp", "hf-stride")
PrefixName = Literal["bos", "eos", "none"]


def check_convention(convention: str, window: int, stride: int | None) -> None:
    """Refuse an unknown convention, or a window or stride the convention cannot use.

    Example:
        >>> check_convention("wikitext", 64, None)
        Traceback (most recent call last):
        ...
        ValueError: convention 'wikitext' is not one of lm-eval, llama.cpp, hf-stride
    """
    if convention not in CONVENTIONS:
        raise ValueError(f"convention {convention!r} is not one of {', '.join(CONVENTIONS)}")
    if convention == "llama.cpp":
        if stride is not None and stride != window:
            raise ValueError(
                f"stride {stride} does not apply to the llama.cpp convention: its chunks never "
                "overlap (leave the stride unset)"
            )
        if window < 3:
            raise ValueError(
                f"window {window} is too small for the llama.cpp convention: it scores the "
                "second half of each chunk but its first token, so it needs at least 3"
            )
    if convention == "hf-stride" and window < 2:
        raise ValueError(
            f"window {window} is too small for the hf-stride convention: a window of one token "
            "predicts none of its labels"
        )


def convention_prefix(
    convention: Convention, tokenizer: Tokenizer, prefix: PrefixName | None
) -> PrefixName:
    """The prefix a convention uses when none is asked for.

    ``lm-eval``: BOS, else EOS (lm-evaluation-harness's choice). ``llama.cpp`` and ``hf-stride``:
    BOS when the tokenizer adds it to a text by itself (:func:`adds_bos`), else none, as
    ``llama-perplexity`` and ``tokenizer(text)`` do.
    """
    if prefix is not None:
        return prefix
    if convention == "lm-eval":
        return "bos" if tokenizer.bos_token_id is not None else "eos"
    return "bos" if adds_bos(tokenizer) else "none"


def adds_bos(tokenizer: Tokenizer) -> bool:
    """Whether the tokenizer puts BOS before a text when asked for its special tokens.

    Read off the Hugging Face tokenizer behind it (a GGUF file's ``add_bos_token`` becomes
    that tokenizer's setting); a tokenizer without one adds nothing.
    """
    hf_tokenizer = getattr(tokenizer, "hf_tokenizer", None)
    bos = tokenizer.bos_token_id
    if hf_tokenizer is None or bos is None:
        return False
    ids = hf_tokenizer("a", add_special_tokens=True)["input_ids"]
    return bool(ids) and ids[0] == bos


def convention_windows(
    convention: Convention,
    token_ids: Iterable[int],
    prefix_token: int | None,
    window: int,
    stride: int,
) -> Iterator[Window]:
    """One document's windows by ``convention``, from a stream of its token ids."""
    if convention == "llama.cpp":
        return llama_cpp_windows(token_ids, prefix_token, window)
    if convention == "hf-stride":
        return hf_stride_windows(token_ids, prefix_token, window, stride)
    return iter_windows(token_ids, prefix_token, window, stride)


def llama_cpp_windows(
    token_ids: Iterable[int], prefix_token: int | None, window: int
) -> Iterator[Window]:
    """``llama-perplexity``'s chunks of one document (the module docstring), ``L`` ids held.

    Each window's input is the chunk but its last token (whose logits are never used), the
    first replaced by ``prefix_token`` when given; it scores chunk positions ``L // 2 + 1`` on.

    Raises:
        ValueError: the document has fewer than ``L`` tokens (with the prefix), so no chunk.
    """
    check_convention("llama.cpp", window, None)
    return _llama_cpp_windows(token_ids, prefix_token, window)


def _llama_cpp_windows(
    token_ids: Iterable[int], prefix_token: int | None, window: int
) -> Iterator[Window]:
    shift = 0 if prefix_token is None else 1
    chunk: list[int] = [] if prefix_token is None else [prefix_token]
    start = 0  # index in P of chunk[0]
    for token in token_ids:
        chunk.append(token)
        if len(chunk) == window:
            first = chunk[0] if prefix_token is None else prefix_token
            yield Window(
                tokens=[first, *chunk[1:-1]],
                targets=chunk[1:],
                score_from=window // 2,
                first_position=start + 1 - shift,
            )
            start += window
            chunk = []
    if start == 0:
        if len(chunk) <= shift:
            raise ValueError("cannot score an empty document (it has no tokens)")
        raise ValueError(
            f"{len(chunk)} tokens are fewer than one llama.cpp chunk of {window} (the window): "
            "nothing would be scored; use a smaller window or join the texts"
        )


def hf_stride_windows(
    token_ids: Iterable[int], prefix_token: int | None, window: int, stride: int
) -> Iterator[Window]:
    """The Transformers guide's windows of one document (the module docstring).

    Holds at most ``L + S + 1`` ids. A window's input is ``P[b : e - 1]`` (the logits at the
    last position are never used), its targets ``P[b + 1 : e]``, scored from the first label
    the model predicts, and :attr:`Window.counted` is ``trg_len - 1``.

    Raises:
        ValueError: bad window or stride, or a document of fewer than 2 tokens with the prefix.
    """
    check_window(window, stride)
    check_convention("hf-stride", window, stride)
    return _hf_stride_windows(token_ids, prefix_token, window, stride)


def _hf_stride_windows(
    token_ids: Iterable[int], prefix_token: int | None, window: int, stride: int
) -> Iterator[Window]:
    ids = iter(token_ids)
    shift = 0 if prefix_token is None else 1
    held: list[int] = [] if prefix_token is None else [prefix_token]
    base = 0  # index in P of held[0]
    exhausted = False
    begin = previous_end = 0
    while True:
        while not exhausted and base + len(held) < begin + window + 1:
            token = next(ids, None)
            if token is None:
                exhausted = True
            else:
                held.append(token)
        known = base + len(held)
        if known < 2:
            raise ValueError(
                "cannot score a document of fewer than 2 tokens with the hf-stride convention"
                + ("" if known else " (it has no tokens)")
            )
        end = min(begin + window, known)
        target_length = end - previous_end
        first_label = max(1, end - begin - target_length)  # window index of the first label
        if first_label < end - begin:  # else no label is predicted (the guide's NaN)
            yield Window(
                tokens=held[begin - base : end - 1 - base],
                targets=held[begin + 1 - base : end - base],
                score_from=first_label - 1,
                first_position=begin + 1 - shift,
                counted=target_length - 1,
            )
        if end == known:  # the stream is exhausted: a full window would have read past it
            return
        previous_end = end
        begin += stride
        del held[: begin - base]
        base = begin


def counted(win: Window, nll: float, tokens: int, correct: int) -> tuple[float, int, int]:
    """A window's summed nats, token count and top-1 count as its convention counts them.

    Unchanged unless :attr:`Window.counted` is set; then scaled by ``counted / tokens`` (the
    guide's weight of a window's mean loss), top-1 count rounded to whole tokens.
    """
    if win.counted is None or tokens == 0:
        return nll, tokens, correct
    weight = win.counted / tokens
    return nll * weight, win.counted, round(correct * weight)


def llama_cpp_uncertainty(nll: float, nll_squared: float, tokens: int) -> float | None:
    """The ``y`` of llama-perplexity's ``PPL = x +/- y`` (the module docstring, rule 5).

    Args:
        nll: the summed nats of the scored tokens.
        nll_squared: the sum of their squares.
        tokens: how many were scored.

    Returns:
        ``e ** mean * sqrt((mean of squares - mean ** 2) / (tokens - 1))``, or None when that is
        undefined (fewer than 2 tokens, or no spread), where llama.cpp prints an error instead.

    >>> round(llama_cpp_uncertainty(3.0, 5.0, 2), 6)  # losses 1 and 2
    2.240845
    """
    if tokens < 2:
        return None
    mean = nll / tokens
    spread = nll_squared / tokens - mean * mean
    if spread <= 0:
        return None
    return math.exp(mean) * math.sqrt(spread / (tokens - 1))


@dataclass
class Tally:
    """How a document was cut: windows, tokens scored, tokens read, and the squared losses.

    Attributes:
        windows: forward passes (llama.cpp's chunks).
        scored: targets whose loss was computed (for ``hf-stride`` this may differ from the
            tokens the totals count, :attr:`crossent.data.Window.counted`).
        read: the document's tokens read (the prefix not included; a document cut by
            ``max_tokens`` counts those kept).
        nll_squared: the sum of each scored token's nats squared (llama.cpp's uncertainty).
    """

    windows: int = 0
    scored: int = 0
    read: int = 0
    nll_squared: float = 0.0

    def add(self, win: Window) -> None:
        """Count one of the document's windows."""
        self.windows += 1
        self.scored += len(win.targets) - win.score_from

    @property
    def unscored(self) -> int:
        """Tokens read but never scored: context only, or a tail no window reaches."""
        return self.read - self.scored


def describe(convention: Convention, window: int, stride: int) -> str:
    """The convention's rules in one line, for outputs (the module docstring has them all).

    >>> describe("llama.cpp", 512, 512).split("; ")[1]
    'positions 257-511 of each scored'
    """
    if convention == "llama.cpp":
        return (
            f"llama-perplexity: chunks of {window} tokens side by side, the first replaced by "
            f"the prefix; positions {window // 2 + 1}-{window - 1} of each scored; the tail "
            "after the last whole chunk dropped"
        )
    if convention == "hf-stride":
        return (
            f"Transformers guide: windows of {window} tokens every {stride}, each scoring its "
            "last trg_len labels but the one at window position 0; each window's mean loss "
            "weighted by trg_len - 1"
        )
    return (
        f"lm-evaluation-harness: windows of {window} tokens every {stride}, each token scored "
        "once, the last window aligned to the end"
    )
