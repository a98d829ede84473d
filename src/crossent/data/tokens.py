"""Tokenizing a document that arrives in parts, with the ids it would have as a whole.

A document is tokenized whole (:mod:`crossent.data.windows`), but a streamed one arrives in
parts and a long one is best tokenized a piece at a time. Tokenizers are not additive across an
arbitrary cut: cutting ``"a\\n\\nb"`` after the first newline gives ``"\\n"`` twice where the
whole text has one ``"\\n\\n"`` token, and a cut inside a word splits it. So the text is re-cut
only at a line start that follows a single newline after a non-space character and precedes a
non-space character (``"...x\\n|y..."``), where every common pre-tokenizer splits anyway, and
each cut is confirmed with the tokenizer itself: a few hundred characters on each side must
tokenize to the same ids together as apart. A candidate that fails is skipped for a later one.
Where a long stretch has no such line start (a file that is one line of gigabytes), the text is
cut at a word instead, before a space that follows a non-space and precedes one
(``"...x| y..."``), and where it has no space either (a line of CJK text, a base64 blob), at one
of a few character boundaries; each is confirmed by the same check, so memory stays bounded by
the piece size. Only a stretch where none of these cuts is confirmed is held until one comes or
the text ends.

Each piece carries the text of every token: the characters from the end of the previous token
to the end of this one, so a document's token texts concatenate to the document. A character
that several tokens share (byte-level BPE and SentencePiece byte fallback cut an emoji or a CJK
character into byte tokens) goes, as text, to the first of them; the others get ``""``.

Each piece also carries the **bytes** of every token: the UTF-8 bytes of the document that the
token covers, so a document's token bytes concatenate to its UTF-8 encoding. For tokens that
share a character these are the tokens' own bytes, as the tokenizer's vocabulary gives them
(``token_bytes``, see :class:`crossent.models.tokenizer.HFTokenizer`), when they add up to the
character exactly; otherwise the first token gets the whole character's bytes, as it gets its
text. :func:`show_bytes` writes a token's bytes as text for people, with ``<0xNN>`` for each
byte of an incomplete UTF-8 sequence.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:
    # crossent.models imports transformers, which reading and tokenizing do not need
    from crossent.models.protocol import Tokenizer


# Tokenize about this many characters at a time.
PIECE_CHARS = 1 << 20
# Characters on each side of a cut that must tokenize the same together as apart.
_CHECK_CHARS = 256
_CUT = re.compile(r"(?<=\S\n)(?=\S)")
# Without a line start to cut at: before a space between two non-spaces, then anywhere.
_WORD_CUT = re.compile(r"(?<=\S)(?= \S)")
# Character boundaries tried, this far apart, when a stretch has neither.
_ANY_CUT_STEP, _ANY_CUT_TRIES = 97, 64


@runtime_checkable
class ByteTokenizer(Protocol):
    """A tokenizer that can say which raw bytes a token stands for (None where it cannot)."""

    def token_bytes(self, ids: Sequence[int]) -> list[bytes | None]: ...


def show_bytes(data: bytes) -> str:
    """A token's bytes as text: UTF-8 where they hold whole characters, ``<0xNN>`` per byte of
    an incomplete or invalid UTF-8 sequence (SentencePiece's name for a byte token).

    A text that itself contains ``<0xE2>`` reads the same; the byte count tells them apart.

    >>> show_bytes("é".encode()), show_bytes(b" \\xe6"), show_bytes("😀".encode()[1:3])
    ('é', ' <0xE6>', '<0x9F><0x98>')
    """
    text = data.decode("utf-8", errors="surrogateescape")
    return "".join(
        f"<0x{ord(char) - 0xDC00:02X}>" if "\udc80" <= char <= "\udcff" else char for char in text
    )


@dataclass(frozen=True)
class TokenPiece:
    """A consecutive piece of a document and its tokens.

    Attributes:
        text: the piece's characters; the pieces of a document concatenate to it.
        ids: the piece's token ids, as in the tokenization of the whole document.
        token_texts: with offsets only, each token's text (see the module docstring).
        token_starts: with offsets only, where each token's text starts in the document (for
            a token that shares a character, where that character starts).
        token_bytes: with offsets only, the document's bytes each token covers (see the
            module docstring).
    """

    text: str
    ids: list[int]
    token_texts: list[str] | None = None
    token_starts: list[int] | None = None
    token_bytes: list[bytes] | None = None


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
    """The first confirmed cut at or after ``after`` with room for the check; or None.

    Line starts first; only where none is confirmed, a word start, then a character boundary
    (the module docstring).
    """
    end = len(text) - _CHECK_CHARS
    for pattern in (_CUT, _WORD_CUT):
        for match in pattern.finditer(text, after, end):
            if _additive(tokenizer, text, match.start()):
                return match.start()
    stop = min(end, after + _ANY_CUT_STEP * _ANY_CUT_TRIES)
    for cut in range(after, stop, _ANY_CUT_STEP):
        if _additive(tokenizer, text, cut):
            return cut
    return None


def _additive(tokenizer: Tokenizer, text: str, cut: int) -> bool:
    """Whether the characters around ``cut`` tokenize to the same ids together as apart."""
    left = text[max(0, cut - _CHECK_CHARS) : cut]
    right = text[cut : cut + _CHECK_CHARS]
    return tokenizer.encode(left + right) == tokenizer.encode(left) + tokenizer.encode(right)


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
        raws: list[bytes] = []
        covered = 0  # characters of this piece given to tokens so far
        first = 0
        while first < len(ids):
            # A run: a token and the tokens after it whose spans overlap it (pieces of one
            # character); a token that shares no character is a run of one.
            begin, end = max(spans[first][0], covered), max(spans[first][1], covered)
            stop = first + 1
            while stop < len(ids) and spans[stop][0] < end:
                end = max(end, spans[stop][1])
                stop += 1
            head = self.uncovered + text[covered:begin]  # characters no token claims, before
            starts.append(self.start + covered - len(self.uncovered))
            texts.append(head + text[begin:end])
            starts.extend(self.start + max(spans[i][0], begin) for i in range(first + 1, stop))
            texts.extend("" for _ in range(first + 1, stop))
            raws.extend(_run_bytes(tokenizer, ids[first:stop], head, text[begin:end]))
            self.uncovered = ""
            covered, first = end, stop
        self.uncovered += text[covered:]
        if last and texts and self.uncovered:
            texts[-1] += self.uncovered  # trailing characters no token claims stay visible
            raws[-1] += self.uncovered.encode("utf-8")
            self.uncovered = ""
        self.start += len(text)
        return TokenPiece(text, ids, texts, starts, raws)


def _run_bytes(tokenizer: Tokenizer, ids: list[int], head: str, characters: str) -> list[bytes]:
    """The bytes of each token of a run that covers ``characters`` after ``head``."""
    whole = characters.encode("utf-8")
    if len(ids) > 1 and isinstance(tokenizer, ByteTokenizer):
        own = [data for data in tokenizer.token_bytes(ids) if data is not None]
        if len(own) == len(ids) and b"".join(own) == whole:
            return [head.encode("utf-8") + own[0], *own[1:]]
    return [head.encode("utf-8") + whole, *(b"" for _ in ids[1:])]
