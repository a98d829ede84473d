"""The windowing convention: its properties, exact small cases, and lm-evaluation-harness."""

from __future__ import annotations

import itertools
import random
import re
from collections.abc import Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from crossent.data import Window, iter_windows, rolling_windows

PROPERTY = settings(max_examples=300, deadline=None)


@st.composite
def _documents(draw: st.DrawFn) -> tuple[list[int], int | None, int, int]:
    prefix = draw(st.none() | st.just(-1))  # -1 is never a document token, so it is traceable
    n_tokens = draw(st.integers(1 if prefix is not None else 2, 200))
    window = draw(st.integers(1, 40))
    stride = draw(st.integers(1, window))
    # distinct ids, so a target's value says which document position it is
    return list(range(n_tokens)), prefix, window, stride


@PROPERTY
@given(case=_documents())
def test_every_token_is_scored_once_in_order(case: tuple[list[int], int | None, int, int]) -> None:
    tokens, prefix, window, stride = case
    windows = rolling_windows(tokens, prefix, window, stride)
    scored = [target for w in windows for target in w.scored_targets]
    assert scored == (tokens if prefix is not None else tokens[1:])


@PROPERTY
@given(case=_documents())
def test_targets_are_the_next_tokens(case: tuple[list[int], int | None, int, int]) -> None:
    tokens, prefix, window, stride = case
    sequence = tokens if prefix is None else [prefix, *tokens]
    for w in rolling_windows(tokens, prefix, window, stride):
        assert len(w.targets) == len(w.tokens) >= 1
        start = sequence.index(w.tokens[0])
        assert w.tokens == sequence[start : start + len(w.tokens)]
        assert w.targets == sequence[start + 1 : start + 1 + len(w.targets)]
        assert prefix not in w.targets


@PROPERTY
@given(case=_documents())
def test_first_position_names_the_targets(case: tuple[list[int], int | None, int, int]) -> None:
    tokens, prefix, window, stride = case
    for w in rolling_windows(tokens, prefix, window, stride):
        # ids are their own positions here
        assert w.targets == tokens[w.first_position : w.first_position + len(w.targets)]


@PROPERTY
@given(case=_documents())
def test_a_stream_is_read_lazily_and_held_briefly(
    case: tuple[list[int], int | None, int, int],
) -> None:
    """Each window is made before the stream is read far past it: at most L + S + 1 ahead."""
    tokens, prefix, window, stride = case
    read = 0

    def stream() -> Iterator[int]:
        nonlocal read
        for token in tokens:
            read += 1
            yield token

    windows = iter_windows(stream(), prefix, window, stride)
    assert read == 0
    for w in windows:
        last_needed = w.first_position + len(w.targets)
        assert read <= last_needed + stride + 1
    assert read == len(tokens)


@PROPERTY
@given(case=_documents())
def test_window_lengths(case: tuple[list[int], int | None, int, int]) -> None:
    tokens, prefix, window, stride = case
    n_targets = len(tokens) - (prefix is None)
    windows = rolling_windows(tokens, prefix, window, stride)
    # full windows throughout, unless the whole document is shorter than one
    assert [len(w.tokens) for w in windows] == [min(window, n_targets)] * len(windows)
    assert all(0 <= w.score_from < len(w.tokens) for w in windows)


@PROPERTY
@given(case=_documents())
def test_later_windows_give_at_least_window_minus_stride_context(
    case: tuple[list[int], int | None, int, int],
) -> None:
    tokens, prefix, window, stride = case
    for w in rolling_windows(tokens, prefix, window, stride)[1:]:
        # the target at position i is predicted from the i + 1 inputs up to it
        assert w.score_from + 1 >= window - stride + 1


@PROPERTY
@given(case=_documents())
def test_final_window_ends_at_the_document_end(
    case: tuple[list[int], int | None, int, int],
) -> None:
    tokens, prefix, window, stride = case
    final = rolling_windows(tokens, prefix, window, stride)[-1]
    assert final.targets[-1] == tokens[-1]


@PROPERTY
@given(case=_documents())
def test_stride_equal_to_window_gives_disjoint_targets(
    case: tuple[list[int], int | None, int, int],
) -> None:
    tokens, prefix, window, _ = case
    windows = rolling_windows(tokens, prefix, window, window)
    # every window but the last scores all its targets; each input overlaps the previous
    # window's targets by exactly one token
    assert all(w.score_from == 0 for w in windows[:-1])
    for previous, current in itertools.pairwise(windows[:-1]):
        assert current.tokens[0] == previous.targets[-1]


@pytest.mark.parametrize(
    ("tokens", "prefix", "window", "stride", "expected"),
    [
        # shorter than one window: a single short window
        ([7, 8], 0, 4, 4, [Window([0, 7], [7, 8], 0, 0)]),
        # exact multiple of the window
        (
            [1, 2, 3, 4],
            0,
            2,
            2,
            [Window([0, 1], [1, 2], 0, 0), Window([2, 3], [3, 4], 0, 2)],
        ),
        # the final window is pulled back to the end and scores only what is new
        (
            [1, 2, 3, 4, 5],
            0,
            2,
            2,
            [
                Window([0, 1], [1, 2], 0, 0),
                Window([2, 3], [3, 4], 0, 2),
                Window([3, 4], [4, 5], 1, 3),
            ],
        ),
        # stride 1: after the first window, one new target per window with full context
        (
            [1, 2, 3, 4],
            0,
            3,
            1,
            [Window([0, 1, 2], [1, 2, 3], 0, 0), Window([1, 2, 3], [2, 3, 4], 2, 1)],
        ),
        # stride 2 of 4 over 9 tokens
        (
            list(range(1, 10)),
            0,
            4,
            2,
            [
                Window([0, 1, 2, 3], [1, 2, 3, 4], 0, 0),
                Window([2, 3, 4, 5], [3, 4, 5, 6], 2, 2),
                Window([4, 5, 6, 7], [5, 6, 7, 8], 2, 4),
                Window([5, 6, 7, 8], [6, 7, 8, 9], 3, 5),
            ],
        ),
        # no prefix: the first token is context only
        ([1, 2, 3, 4], None, 2, 2, [Window([1, 2], [2, 3], 0, 1), Window([2, 3], [3, 4], 1, 2)]),
        # window of one token: a bigram model's view
        ([5, 6], 9, 1, 1, [Window([9], [5], 0, 0), Window([5], [6], 0, 1)]),
    ],
)
def test_exact_windows(
    tokens: list[int], prefix: int | None, window: int, stride: int, expected: list[Window]
) -> None:
    assert rolling_windows(tokens, prefix, window, stride) == expected


@pytest.mark.parametrize(
    ("tokens", "prefix", "window", "stride", "message"),
    [
        ([1, 2], 0, 0, 1, "window 0 is outside [1, ...]"),
        ([1, 2], 0, 4, 0, "stride 0 is outside [1, 4]"),
        ([1, 2], 0, 4, 5, "stride 5 is outside [1, 4]"),
        ([], 0, 4, 4, "empty document"),
        ([1], None, 4, 4, "one-token document without a prefix token"),
    ],
)
def test_bad_arguments(
    tokens: list[int], prefix: int | None, window: int, stride: int, message: str
) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        rolling_windows(tokens, prefix, window, stride)


def test_equals_lm_evaluation_harness() -> None:
    """lm-eval's ``loglikelihood_rolling`` windows are the oracle, for S = L and any S."""
    lm_eval_utils = pytest.importorskip(
        "lm_eval.utils", reason="lm-eval is not installed (pip install lm-eval): the oracle"
    )
    rng = random.Random(4)
    cases = [(n, window) for n in range(1, 40) for window in range(1, 12)]
    cases += [(rng.randint(1, 3000), rng.randint(1, 512)) for _ in range(200)]
    for n_tokens, window in cases:
        tokens = [rng.randrange(50_000) for _ in range(n_tokens)]
        prefix = rng.randrange(50_000)
        strides = {window, rng.randint(1, window)}
        if n_tokens * window <= 20_000:  # stride 1 copies a window per token
            strides.add(1)
        for stride in sorted(strides):
            # lm-eval's context_len is the stride's complement; the harness itself uses 1 (S = L)
            theirs = [
                lm_eval_utils.make_disjoint_window(pair)
                for pair in lm_eval_utils.get_rolling_token_windows(
                    tokens, prefix, window, window - stride + 1
                )
            ]
            ours = rolling_windows(tokens, prefix, window, stride)
            assert len(ours) == len(theirs), (n_tokens, window, stride)
            for w, (context, continuation) in zip(ours, theirs, strict=True):
                # the harness feeds (context + continuation)[:-1] and scores the last
                # len(continuation) positions
                sequence = context + continuation
                assert len(sequence) <= window + 1
                assert w.tokens == sequence[:-1], (n_tokens, window, stride)
                assert w.targets == sequence[1:], (n_tokens, window, stride)
                assert w.scored_targets == continuation, (n_tokens, window, stride)
