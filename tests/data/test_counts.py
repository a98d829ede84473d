"""Bytes and words of a text, against Python's own UTF-8 encoder and lm-eval's re.split."""

from __future__ import annotations

import re

import pytest

from crossent.data.counts import WordCount, count_bytes, count_words

TEXTS = ["a  b\tc\n", "one", "", " leading", "naïve ☃ text\u00a0with\u2028odd\r\nspaces  "]


def test_word_count_is_lm_evals() -> None:
    assert count_words("a  b\tc\n") == 4  # re.split gives a trailing empty piece, as lm-eval's
    assert count_words("one") == 1


@pytest.mark.parametrize("text", TEXTS)
def test_words_are_the_pieces_of_re_split(text: str) -> None:
    assert count_words(text) == len(re.split(r"\s+", text))


@pytest.mark.parametrize("text", TEXTS)
def test_bytes_are_utf8_bytes(text: str) -> None:
    assert count_bytes(text) == len(text.encode("utf-8"))


def test_pieces_cut_between_whitespace_runs_count_as_the_whole() -> None:
    text = "first line\nsecond  line\nthird"
    pieces = ["first line\n", "second  line\n", "third"]
    count = WordCount()
    for piece in pieces:
        count.add(piece)
    assert count.words == len(re.split(r"\s+", text)) == 5
