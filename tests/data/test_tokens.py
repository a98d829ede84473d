"""Tokenizing in pieces gives the ids of the whole text: the real tokenizer is the oracle."""

from __future__ import annotations

import pytest

from crossent.data import Document, read_documents
from crossent.data.tokens import tokenize_parts
from crossent.models import HFCausalLM

TEXTS = {
    "lines": "".join(f"Line {i}: the cat sat on the mat.\n" for i in range(300)),
    "blank lines and indents": "".join(
        f"Para {i}.\n\n\n    indented {i}\n\ttab\n \nx\n" for i in range(200)
    ),
    "no newline at all": "word " * 2000,
    "one line, no space": "日本語の文章は空白なしで続く。" * 700,
    "one line of long words": ("x" * 40 + " ") * 300,
    "crlf and unicode": "".join(f"café {i} 😀\r\nnaïve\u2028☃ {i}\n" for i in range(200)),
}


@pytest.mark.parametrize("name", sorted(TEXTS))
@pytest.mark.parametrize("piece_chars", [300, 1000])
def test_pieces_tokenize_as_the_whole(smollm2: HFCausalLM, name: str, piece_chars: int) -> None:
    text = TEXTS[name]
    parts = [text[i : i + 97] for i in range(0, len(text), 97)]  # cut anywhere, even mid-line
    pieces = list(tokenize_parts(smollm2.tokenizer, parts, offsets=True, piece_chars=piece_chars))
    assert "".join(piece.text for piece in pieces) == text
    assert [i for piece in pieces for i in piece.ids] == smollm2.tokenizer.encode(text)
    texts = [t for piece in pieces for t in piece.token_texts or []]
    starts = [s for piece in pieces for s in piece.token_starts or []]
    assert "".join(texts) == text
    assert all(text.startswith(token, start) for token, start in zip(texts, starts, strict=True))
    assert len(pieces) > 1  # the test exercises cuts, a text of one line included
    # a piece is cut once twice the piece size is pending: memory is bounded, however long the line
    assert all(piece_chars <= len(piece.text) < 2 * piece_chars + 97 for piece in pieces[:-1])


def test_the_default_text_in_small_pieces(smollm2: HFCausalLM) -> None:
    (document,) = read_documents([])
    assert isinstance(document, Document)
    text = document.text[:200_000]
    pieces = list(tokenize_parts(smollm2.tokenizer, [text], piece_chars=5000))
    assert len(pieces) > 10
    assert [i for piece in pieces for i in piece.ids] == smollm2.tokenizer.encode(text)
