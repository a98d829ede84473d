"""The byte-level BPE tokenizer: lossless on any text, its size obeyed, GPT-2's special token."""

from __future__ import annotations

import pydoc_data.topics

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from transformers import PreTrainedTokenizerFast

from crossent.models import train_bpe_tokenizer
from crossent.models.tokenizer import HFTokenizer

TRAINING_TEXT = (
    "The quick brown fox jumps over the lazy dog. The dog sleeps; the fox runs away.\n"
    "def main():\n    return the_answer(42)\n"
) * 20
TRICKY = [
    "",
    " leading space and trailing space ",
    "emoji 🦊🇫🇷👩‍👩‍👧 and CJK 日本語の文章, 中文",
    "Windows\r\nline endings\r\n\tand\ttabs\t\t",
    "unseen: Ωμέγα ñandú ᚠᛇᚻ ∮ E⋅da = Q \u200b zero width \x00 nul \x7f",
    "    indented\n\n\n   blank lines   ",
    "the<|endoftext|>special token in the middle",
]


@pytest.fixture(scope="module")
def tokenizer() -> PreTrainedTokenizerFast:
    return train_bpe_tokenizer([TRAINING_TEXT], vocab_size=300)


@pytest.mark.parametrize("text", TRICKY)
def test_round_trip_is_exact(tokenizer: PreTrainedTokenizerFast, text: str) -> None:
    ids = tokenizer.encode(text, add_special_tokens=False)
    assert tokenizer.decode(ids) == text
    wrapped = HFTokenizer(tokenizer)
    assert wrapped.encode(text) == ids
    assert wrapped.decode(ids) == text


@settings(max_examples=200, deadline=None)
@given(text=st.text())
def test_round_trip_of_any_text(text: str) -> None:
    tokenizer = _shared_tokenizer()
    assert tokenizer.decode(tokenizer.encode(text, add_special_tokens=False)) == text


def test_unseen_characters_become_their_utf8_bytes(tokenizer: PreTrainedTokenizerFast) -> None:
    # No merge covers a character absent from training, so it is one token per UTF-8 byte.
    for character in ["Ω", "日", "🦊", "\x00"]:
        ids = tokenizer.encode(character, add_special_tokens=False)
        assert len(ids) == len(character.encode("utf-8"))


def test_vocabulary_size_is_obeyed() -> None:
    # A text with more distinct pairs than any of these sizes leaves room for.
    texts = list(pydoc_data.topics.topics.values())[:30]
    for vocab_size in (258, 300, 1000):
        tokenizer = train_bpe_tokenizer(texts, vocab_size=vocab_size)
        assert len(tokenizer) == vocab_size
        assert max(tokenizer.get_vocab().values()) == vocab_size - 1


def test_a_small_text_gives_fewer_tokens_not_more() -> None:
    tokenizer = train_bpe_tokenizer(["abab"], vocab_size=1000)
    # 256 bytes, <|endoftext|>, and merges of "ab", "abab" at most.
    assert 257 < len(tokenizer) <= 260


def test_frequent_words_are_merged(tokenizer: PreTrainedTokenizerFast) -> None:
    ids = tokenizer.encode(" the fox", add_special_tokens=False)
    assert tokenizer.convert_ids_to_tokens(ids) == ["Ġthe", "Ġfox"]
    # No space is invented before the text: "The" at the start keeps no "Ġ".
    assert tokenizer.convert_ids_to_tokens(tokenizer.encode("The", add_special_tokens=False)) == [
        "The"
    ]


def test_end_of_text_is_bos_and_eos(tokenizer: PreTrainedTokenizerFast) -> None:
    assert tokenizer.bos_token == tokenizer.eos_token == "<|endoftext|>"
    assert tokenizer.bos_token_id == tokenizer.eos_token_id == 0
    assert tokenizer.encode("<|endoftext|>", add_special_tokens=False) == [0]
    # As GPT-2's, the tokenizer adds no special token by itself.
    plain = tokenizer.encode("the fox", add_special_tokens=False)
    assert tokenizer("the fox")["input_ids"] == plain


def test_training_is_deterministic(tokenizer: PreTrainedTokenizerFast) -> None:
    again = train_bpe_tokenizer(iter([TRAINING_TEXT]), vocab_size=300)
    assert again.get_vocab() == tokenizer.get_vocab()


def test_one_string_is_one_text(tokenizer: PreTrainedTokenizerFast) -> None:
    # Not an iterable of one-character texts, which would learn no merge at all.
    assert train_bpe_tokenizer(TRAINING_TEXT, vocab_size=300).get_vocab() == tokenizer.get_vocab()


def test_too_small_a_vocabulary_is_refused() -> None:
    with pytest.raises(ValueError, match="vocab_size must exceed 257"):
        train_bpe_tokenizer([TRAINING_TEXT], vocab_size=257)


_CACHE: list[PreTrainedTokenizerFast] = []


def _shared_tokenizer() -> PreTrainedTokenizerFast:
    """One tokenizer for all Hypothesis examples (function-scoped fixtures are not reset)."""
    if not _CACHE:
        _CACHE.append(train_bpe_tokenizer([TRAINING_TEXT], vocab_size=300))
    return _CACHE[0]
