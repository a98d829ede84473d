"""Which token is scored where: the one place crossent's windowing convention is written down.

A causal language model reads at most ``L`` tokens at a time, so a document longer than that is
scored through several windows. Everything crossent reports (nats per token, perplexity, bits per
byte) is a sum over the targets these windows score, so this module decides those numbers as much
as the model does. Every other module refers here rather than restating the rule.

The convention
--------------

1. A document is tokenized whole. Its token ids ``t[0], ..., t[n-1]`` are preceded by a *prefix
   token* ``p`` (BOS, else EOS, as lm-evaluation-harness does), giving the sequence
   ``P = [p, t[0], ..., t[n-1]]``. The prefix is context only: it is never a target. It is what
   lets the model score the document's first token, so with a prefix **all n tokens are scored**.
   Without one (``prefix_token=None``) ``P = t`` and ``t[0]`` has nothing to be predicted from:
   it is context only and the ``n - 1`` tokens after it are scored.
2. A window is ``L`` consecutive tokens of ``P`` as the model's input; its targets are the same
   positions shifted by one (input ``P[s : s+L]``, targets ``P[s+1 : s+L+1]``).
3. Windows start at ``s = 0, S, 2S, ...`` (the stride ``S``, ``1 <= S <= L``) while they fit. The
   first window that would run past the end is instead *aligned to the end*
   (``s = len(P) - 1 - L``), so it still has a full ``L`` tokens of input; it is the last one.
4. A window scores only the targets that no earlier window scored: a suffix of its targets,
   from :attr:`Window.score_from` on. Everything before that suffix is context.

Consequences, which the tests check as properties:

* every target (every token of the document, with a prefix) is scored exactly once, and the
  scored targets of the windows, taken in order, are the document's tokens in order;
* every window has exactly ``L`` tokens, except when the whole document has fewer than ``L``
  targets: then there is one window, as long as the document;
* a token scored by any window after the first is predicted from at least ``L - S + 1`` input
  tokens of its window (the token right before it and at least ``L - S`` more);
* the cost is ``len(P) / S`` forward passes of ``L`` tokens, roughly: ``S = L`` is fastest,
  ``S = 1`` gives every token the full context.

With ``S = L`` this is exactly lm-evaluation-harness's rolling log-likelihood
(``loglikelihood_rolling``: ``get_rolling_token_windows`` with ``context_len=1`` followed by
``make_disjoint_window``): the same inputs, the same scored targets. For any ``S`` it equals
``get_rolling_token_windows`` with ``context_len = L - S + 1``.

How this differs from the Hugging Face recipe
---------------------------------------------

The Transformers guide "Perplexity of fixed-length models" slides windows ``ids[b : b+L]`` with
``b = 0, S, 2S, ...`` over the whole corpus joined into one sequence, sets the labels of the
overlapping context to ``-100`` and relies on the model shifting the labels by one internally.
Precisely:

* **No prefix token.** The corpus's first token is never scored.
* **With S = L (no overlap), the first token of every window is unscored.** Its label sits at
  window position 0 and no logit predicts it after the shift: one token per window drops out
  of the average. Here consecutive windows overlap by one token instead (the last target of one
  window is the first input of the next), so that token is scored with one token of context.
* **With S < L, every token is in the loss, but the average is reweighted.** The first unmasked
  label of a later window sits at position ``L - S >= 1``, so the model's mean loss covers all
  ``S`` new tokens; yet the recipe multiplies that mean by ``num_valid_tokens - 1`` ("subtract
  batch_size due to internal label shift"), which is right only for the first window. So each
  token scored by a later window of ``k`` new tokens weighs ``(k - 1) / k`` instead of one, and
  the token count falls one short per window. At ``S = 1`` every token after the first window
  weighs zero: the result is the first window's perplexity alone.
* **The last window is not aligned to the end.** It starts at the next multiple of ``S`` and is
  shorter than ``L``, so its tokens see less context than they could.

Here every token has weight one and the final window has full context.

Windows are made from a stream of token ids (:func:`iter_windows`) holding at most ``L + S + 1``
of them, so a document need not fit in memory; :func:`rolling_windows` is the same as a list.

>>> from crossent.data import rolling_windows
>>> for w in rolling_windows([10, 11, 12, 13, 14], prefix_token=0, window=3, stride=2):
...     print(w.tokens, w.targets, w.score_from, w.first_position)
[0, 10, 11] [10, 11, 12] 0 0
[11, 12, 13] [12, 13, 14] 1 2
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass


@dataclass(frozen=True)
class Window:
    """One forward pass: the model's input, its next-token targets, and which of them count.

    Attributes:
        tokens: the model's input, ``len(tokens) <= L``.
        targets: the token each input position must predict (same length as ``tokens``):
            ``targets[i]`` is the token that follows ``tokens[i]`` in the prefixed document.
        score_from: positions ``score_from, ..., len(tokens) - 1`` are scored; the targets
            before them were scored by an earlier window and serve as context only.
        first_position: the index of ``targets[0]`` among the document's token ids, so
            ``targets[i]`` is the document's token ``first_position + i``.
        counted: how many tokens the scored targets count for in the totals; None (every
            convention but ``hf-stride``, :mod:`crossent.data.conventions`): one each. Given,
            the window's summed loss is scaled by ``counted / scored`` and its token count is
            ``counted``, as the Transformers guide weights each window's mean loss.
    """

    tokens: list[int]
    targets: list[int]
    score_from: int
    first_position: int = 0
    counted: int | None = None

    @property
    def scored_targets(self) -> list[int]:
        """The targets this window scores, in order."""
        return self.targets[self.score_from :]


def rolling_windows(
    token_ids: Iterable[int], prefix_token: int | None, window: int, stride: int
) -> list[Window]:
    """Cut one tokenized document into windows by crossent's convention (the module docstring).

    Args:
        token_ids: the whole document's token ids.
        prefix_token: the token placed before the document as context (BOS or EOS), or ``None``
            for no prefix, in which case the document's first token is context only.
        window: ``L``, the number of input tokens per forward pass.
        stride: ``S``, how far consecutive windows advance, ``1 <= S <= L``.

    Returns:
        The windows in document order; their scored targets, concatenated, are ``token_ids``
        (without the first token when ``prefix_token`` is ``None``).

    Raises:
        ValueError: when ``window < 1``, ``stride`` is outside ``[1, window]``, or the document
            has nothing to score (no tokens, or one token and no prefix).

    >>> [w.scored_targets for w in rolling_windows([5, 6, 7, 8, 9], 1, window=2, stride=2)]
    [[5, 6], [7, 8], [9]]
    >>> rolling_windows([5, 6, 7, 8, 9], 1, window=2, stride=2)[-1]
    Window(tokens=[7, 8], targets=[8, 9], score_from=1, first_position=3, counted=None)
    """
    return list(iter_windows(token_ids, prefix_token, window, stride))


def iter_windows(
    token_ids: Iterable[int], prefix_token: int | None, window: int, stride: int
) -> Iterator[Window]:
    """:func:`rolling_windows` as a generator over a stream of ids, holding ``L + S + 1`` of them.

    The arguments and the windows are those of :func:`rolling_windows`; the checks of
    ``window`` and ``stride`` run at the call, the document's own checks when the stream ends.
    """
    check_window(window, stride)
    return _windows(token_ids, prefix_token, window, stride)


def check_window(window: int, stride: int | None = None, *, context: int | None = None) -> None:
    """Refuse a window outside ``[1, context]`` or a stride outside ``[1, window]``.

    The one place these limits are checked: the command line calls it before a model loads
    (``context`` unknown yet), :func:`crossent.evaluate` again with the model's context.

    Example:
        >>> check_window(8, 9)
        Traceback (most recent call last):
        ...
        ValueError: stride 9 is outside [1, 8] (the window)
    """
    if context is not None and not 1 <= window <= context:
        raise ValueError(f"window {window} is outside [1, {context}] (the model's context)")
    if window < 1:
        raise ValueError(f"window {window} is outside [1, ...] (a window holds at least 1 token)")
    if stride is not None and not 1 <= stride <= window:
        raise ValueError(f"stride {stride} is outside [1, {window}] (the window)")


def _windows(
    token_ids: Iterable[int], prefix_token: int | None, window: int, stride: int
) -> Iterator[Window]:
    # The prefixed sequence P is held from index `base` on; indices below are P's.
    ids = iter(token_ids)
    buffer: list[int] = [] if prefix_token is None else [prefix_token]
    base = 0
    exhausted = False
    # Token ids are P's indices shifted by the prefix: P[k] is the document's token k - shift.
    shift = 0 if prefix_token is None else 1

    def fill(length: int) -> None:
        """Read until P has ``length`` entries held or the stream ends."""
        nonlocal exhausted
        while not exhausted and base + len(buffer) < length:
            token = next(ids, None)
            if token is None:
                exhausted = True
            else:
                buffer.append(token)

    scored_until = 0  # targets P[1 : scored_until + 1] are already scored
    start = 0
    while True:
        fill(start + window + 1)
        if base + len(buffer) >= start + window + 1:
            end = start + window  # a full window that does not reach past the known tokens
        else:
            n_targets = base + len(buffer) - 1
            if n_targets <= 0:
                if shift == 0 and n_targets == 0:
                    raise ValueError(
                        "cannot score a one-token document without a prefix token: "
                        "its only token has no context to be predicted from"
                    )
                raise ValueError("cannot score an empty document (it has no tokens)")
            if scored_until >= n_targets:
                return
            # The window that would run past the end is pulled back to end there, so it keeps
            # a full L tokens of input (only a document shorter than L gets a shorter window).
            start = max(0, min(start, n_targets - window))
            end = n_targets
        yield Window(
            tokens=buffer[start - base : end - base],
            targets=buffer[start + 1 - base : end + 1 - base],
            score_from=scored_until - start,
            first_position=start + 1 - shift,
        )
        scored_until = end
        # A later window starts at or after this one's start (a pulled-back last window too,
        # as this window ended inside the document), so nothing before it is needed again.
        del buffer[: start - base]
        base = start
        start += stride
