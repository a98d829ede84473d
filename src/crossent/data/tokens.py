"""Tokenizing a document that arrives in parts, with the ids it would have as a whole.

A document is tokenized whole (:mod:`crossent.data.windows`), but a streamed one arrives in
parts and a long one is best tokenized a piece at a time. Tokenizers are not additive across an
arbitrary cut: cutting ``"a\\n\\nb"`` after the first newline gives ``"\\n"`` twice where the
whole text has one ``"\\n\\n"`` token, and a cut inside a word splits it. So the text is re-cut
only at a line start that follows a single newline after a non-space character and precedes a
non-space character (``"...x\\n|y..."``), where every common pre-tokenizer splits anyway, and
each cut is confirmed with the tokenizer itself: a few hundred characters on each side must
tokenize to the same ids together as apart. A candidate that fails is skipped for an earlier
one; a text with no confirmed cut is held until one comes or the text ends.

Each piece carries the text of every token: the characters from the end of the previous token
to the end of this one, so a document's token texts concatenate to the document.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    # crossent.models imports transformers, which reading and tokenizing do not need
    from crossent.models.protocol import Tokenizer


# Tokenize about this many characters at a time.
PIECE_CHARS = 1 << 20
# Characters on each side of a cut that must tokenize the same together as apart.
_CHECK_CHARS = 256
_CUT = re.compile(r"(?<=\S\n)(?=\S)")


@dataclass(frozen=True)
class TokenPiece:
    """A consecutive piece of a document and its tokens.

    Attributes:
        text: the piece's characters; the pieces of a document concatenate to it.
        ids: the piece's token ids, as in the tokenization of the whole document.
        token_texts: with offsets only, each token's text (see the module docstring).
        token_starts: with offsets only, where each token's text starts in the document.
    """

    text: str
    ids: list[int]
    token_texts: list[str] | None = None
    token_starts: list[int] | None = None


def tokenize_parts(
    tokenizer: Tokenizer,
    parts: Iterable[str],
    *,
    offsets: bool = False,
    piece_chars: int = PIECE_CHARS,
) -> Iterator[TokenPiece]:
    """Tokenize a document given as consecutive parts of its text, a piece at a time.

    Args:
        tokenizer: the model's tokenizer.
        parts: the document's text in consecutive parts, cut anywhere.
        offsets: also give each token's text and where it starts.
        piece_chars: about how many characters to tokenize at a time.

    Yields:
        The document's pieces in order, each cut where tokenization is confirmed additive.
    """
    pending = ""
    searched = 0  # candidate cuts before this offset of `pending` failed the check
    state = _TextState()
    for part in parts:
        pending += part
        while len(pending) >= 2 * piece_chars:
            cut = _confirmed_cut(tokenizer, pending, max(piece_chars, searched))
            if cut is None:
                searched = max(0, len(pending) - _CHECK_CHARS)
                break
            yield state.piece(tokenizer, pending[:cut], offsets, last=False)
            pending = pending[cut:]
            searched = 0
    if pending:
        yield state.piece(tokenizer, pending, offsets, last=True)


def _confirmed_cut(tokenizer: Tokenizer, text: str, after: int) -> int | None:
    """The first confirmed cut at or after ``after`` with room for the check; or None."""
    for match in _CUT.finditer(text, after, len(text) - _CHECK_CHARS):
        cut = match.start()
        left = text[max(0, cut - _CHECK_CHARS) : cut]
        right = text[cut : cut + _CHECK_CHARS]
        if tokenizer.encode(left + right) == tokenizer.encode(left) + tokenizer.encode(right):
            return cut
    return None


class _TextState:
    """Where the document's previous piece ended, for the texts of tokens across pieces."""

    def __init__(self) -> None:
        self.start = 0  # document offset of the next piece
        self.uncovered = ""  # characters after the last token's end, not yet given to a token

    def piece(self, tokenizer: Tokenizer, text: str, offsets: bool, *, last: bool) -> TokenPiece:
        if not offsets:
            self.start += len(text)
            return TokenPiece(text, tokenizer.encode(text))
        ids, spans = tokenizer.encode_with_offsets(text)
        texts: list[str] = []
        starts: list[int] = []
        covered = 0  # characters of this piece given to tokens so far
        for _, end in spans:
            end = max(end, covered)  # spans of byte pieces of one character overlap
            starts.append(self.start + covered - len(self.uncovered))
            texts.append(self.uncovered + text[covered:end])
            self.uncovered = ""
            covered = end
        self.uncovered += text[covered:]
        if last and texts and self.uncovered:
            texts[-1] += self.uncovered  # trailing characters no token claims stay visible
            self.uncovered = ""
        self.start += len(text)
        return TokenPiece(text, ids, texts, starts)
