"""The windows of each convention, position by position, against each tool's loop over indices."""

from __future__ import annotations

import pytest

from crossent.data.conventions import (
    check_convention,
    convention_windows,
    counted,
    hf_stride_windows,
    llama_cpp_uncertainty,
    llama_cpp_windows,
)
from crossent.data.counts import SparseCount
from crossent.data.windows import Window, rolling_windows

PREFIX = 0


def _scored_positions(win: Window) -> list[int]:
    """The document positions of the targets ``win`` scores."""
    return list(range(win.first_position + win.score_from, win.first_position + len(win.targets)))


@pytest.mark.parametrize("n", [8, 9, 15, 16, 17, 40])
@pytest.mark.parametrize("window", [3, 4, 8])
@pytest.mark.parametrize("prefix", [None, PREFIX])
def test_llama_cpp_chunks_follow_perplexity_cpp(n: int, window: int, prefix: int | None) -> None:
    ids = list(range(100, 100 + n))
    tokens = ([prefix] if prefix is not None else []) + ids  # common_tokenize(..., add_bos)
    if len(tokens) < window:
        with pytest.raises(ValueError, match=r"fewer than one llama\.cpp chunk"):
            list(llama_cpp_windows(ids, prefix, window))
        return
    windows = list(llama_cpp_windows(ids, prefix, window))
    assert len(windows) == len(tokens) // window  # n_chunk = tokens.size() / n_ctx
    first = window // 2
    shift = 0 if prefix is None else 1
    for chunk, win in enumerate(windows):
        start = chunk * window
        batch = tokens[start : start + window]
        if prefix is not None:
            batch[0] = prefix  # the chunk's first token replaced, not preceded
        assert win.tokens == batch[: window - 1]  # the last position's logits are never read
        # for (j = first; j < n_ctx - 1; ++j): logits j score tokens[start + j + 1]
        expected = [tokens[start + j + 1] for j in range(first, window - 1)]
        assert win.scored_targets == expected
        assert [ids[p] for p in _scored_positions(win)] == expected
        assert [p + shift for p in _scored_positions(win)] == list(
            range(start + first + 1, start + window)
        )


def _guide_windows(n: int, max_length: int, stride: int) -> list[tuple[list[int], int]]:
    """For each window of the guide's loop: the positions of the labels the model predicts (not
    -100, not at window position 0), and ``num_valid_tokens - batch_size``."""
    out = []
    prev_end = 0
    for begin in range(0, n, stride):
        end = min(begin + max_length, n)
        trg_len = end - prev_end
        labels = list(range(begin, end))[-trg_len:]
        out.append(([p for p in labels if p > begin], len(labels) - 1))
        prev_end = end
        if end == n:
            break
    return out


@pytest.mark.parametrize("n", [2, 5, 16, 17, 18, 31, 40])
@pytest.mark.parametrize(("window", "stride"), [(8, 8), (8, 3), (8, 1), (5, 4), (2, 1)])
@pytest.mark.parametrize("prefix", [None, PREFIX])
def test_hf_stride_windows_follow_the_guide(
    n: int, window: int, stride: int, prefix: int | None
) -> None:
    ids = list(range(100, 100 + n))
    tokens = ([prefix] if prefix is not None else []) + ids
    shift = 0 if prefix is None else 1
    expected = [(p, c) for p, c in _guide_windows(len(tokens), window, stride) if p]
    windows = list(hf_stride_windows(ids, prefix, window, stride))
    got = [([p + shift for p in _scored_positions(win)], win.counted) for win in windows]
    assert got == expected
    for win in windows:
        assert len(win.tokens) == len(win.targets) <= window - 1
        assert win.scored_targets == [ids[p] for p in _scored_positions(win)]


def test_the_guide_s_empty_last_window_is_left_out() -> None:
    # 17 = 2 * 8 + 1: the guide's last window is one token, an empty (NaN) loss.
    assert [label for label, _ in _guide_windows(17, 8, 8)][-1] == []
    assert len(list(hf_stride_windows(range(17), None, 8, 8))) == 2


def test_lm_eval_is_the_rolling_windows() -> None:
    ids = list(range(100, 140))
    got = list(convention_windows("lm-eval", ids, PREFIX, 8, 3))
    assert got == rolling_windows(ids, PREFIX, 8, 3)


def test_weighting_and_uncertainty() -> None:
    win = Window([1, 2, 3], [2, 3, 4], 1, counted=1)
    assert counted(win, 4.0, 2, 2) == (2.0, 1, 1)
    assert counted(Window([1], [2], 0), 4.0, 1, 1) == (4.0, 1, 1)
    losses = [0.5, 1.5, 2.0, 4.0]
    mean = sum(losses) / 4
    sd = (sum((v - mean) ** 2 for v in losses) / 3) ** 0.5  # sample standard deviation
    expected = 2.718281828459045**mean * sd / 4**0.5  # ppl times the standard error of the mean
    value = llama_cpp_uncertainty(sum(losses), sum(v * v for v in losses), 4)
    assert value == pytest.approx(expected, rel=1e-12)
    assert llama_cpp_uncertainty(1.0, 1.0, 1) is None


def test_bad_options_are_refused() -> None:
    with pytest.raises(ValueError, match=r"not one of lm-eval, llama\.cpp, hf-stride"):
        check_convention("wikitext", 8, None)
    with pytest.raises(ValueError, match="at least 3"):
        check_convention("llama.cpp", 2, None)
    with pytest.raises(ValueError, match="predicts none of its labels"):
        check_convention("hf-stride", 1, 1)


def test_sparse_count_counts_the_scored_tokens_bytes() -> None:
    texts = ["ab", "c", "déf", " g"]
    data = [text.encode() for text in texts]
    count = SparseCount(sum(map(len, data)))
    count.add("".join(texts), 0, 4, texts, data)
    count.score(1, 2)
    count.score(3, 4)
    assert (count.bytes, count.unscored_bytes, count.words) == (1 + 2, 2 + 4, 0)
