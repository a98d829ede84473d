"""How big a text is, in bytes and in words: the one place both are counted.

* **Bytes** are the UTF-8 bytes of the text (:func:`count_bytes`). A document read from a file
  is counted as stored instead (:attr:`crossent.data.Document.num_bytes`), which differs only
  where invalid bytes were replaced by U+FFFD.
* **Words** are counted as lm-evaluation-harness counts them for word perplexity,
  ``len(re.split(r"\\s+", text))``: one more than the runs of whitespace, so a text without
  whitespace is one word, and a text that ends in whitespace has an empty last word
  (:func:`count_words`). A text read in pieces is counted by :class:`WordCount`, which gives the
  same number as long as no cut falls inside a run of whitespace.

``bits_per_byte``, ``byte_perplexity`` and ``word_perplexity`` (:mod:`crossent.metrics`) divide
by these counts, so they are lm-eval's.

**Only what is scored counts.** The counts divide nats of scored tokens, so they cover the text
those tokens cover. With a prefix token every token is scored and the counts are the whole
document's, as above (lm-eval's). Otherwise (:class:`ScoredCount`):

* Without a prefix token (``--prefix none``) the document's first token is context only. Its
  bytes (:mod:`crossent.data.tokens` gives each token's bytes, a byte token its own share of a
  character) are not counted, and neither are the words that lie wholly inside it: a word of
  the split above counts when at least one of its characters is in a scored token, so a first
  token ``"Hel"`` of ``"Hello world"`` leaves two words and ``"Hello"`` leaves one. The empty
  word lm-eval counts before leading whitespace counts only when the first token is scored.
* A document cut after its first tokens (``max_tokens``) counts the bytes of the tokens kept
  and the words that start before the last kept token ends; the rest is never read.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

_WHITESPACE = re.compile(r"\s+")


def count_bytes(text: str) -> int:
    """The UTF-8 bytes of ``text``.

    >>> count_bytes("naïve ☃")
    10
    """
    return len(text.encode("utf-8"))


def count_words(text: str) -> int:
    """Words as lm-evaluation-harness counts them for perplexity: pieces between whitespace runs.

    >>> count_words("a  b\\tc\\n"), count_words("one"), count_words("")
    (4, 1, 1)
    """
    count = WordCount()
    count.add(text)
    return count.words


@dataclass
class WordCount:
    """The words of a text that arrives in pieces, as :func:`count_words` counts the whole.

    Each whitespace run adds a word to the one a text starts with, so the pieces' runs add up,
    provided no piece ends inside a run (then that run would be counted twice).

    >>> count = WordCount()
    >>> for piece in ["two words\\n", "and three"]:
    ...     count.add(piece)
    >>> count.words == count_words("two words\\nand three") == 4
    True
    """

    whitespace_runs: int = 0

    def add(self, piece: str) -> None:
        """Count the next piece of the text."""
        self.whitespace_runs += len(_WHITESPACE.findall(piece))

    @property
    def words(self) -> int:
        """The words of the pieces added so far."""
        return 1 + self.whitespace_runs


def whole_characters(text: str, data: bytes) -> int:
    """How many leading characters of ``text`` lie wholly within the first ``len(data)`` bytes.

    >>> whole_characters("a漢", "a漢".encode()[:2])
    1
    """
    count = used = 0
    for character in text:
        used += count_bytes(character)
        if used > len(data):
            break
        count += 1
    return count


class ScoredCount:
    """The bytes and words of one document that its scored tokens cover (the module docstring).

    Fed each piece of the document in order with how many of its tokens were kept (all, or the
    first few of a document cut short); the pieces are cut where no whitespace run is split.

    Args:
        stored_bytes: the document's bytes as stored (its count when everything is scored).
        first_unscored: whether the first token is context only (no prefix token).
    """

    def __init__(self, stored_bytes: int, *, first_unscored: bool) -> None:
        self.stored_bytes = stored_bytes
        self.first_unscored = first_unscored
        self.unscored_bytes = 0  # of the first token, when it is context only
        self.unscored_words = 0  # words wholly inside it
        self.cut = False
        self._runs = 0  # whitespace runs of the pieces before the last one added
        self._last = ""  # the last piece that kept a token, and where it starts
        self._last_start = 0
        self._kept_bytes = 0
        self._end = 0  # where the kept characters end, once the document is cut

    def add(
        self,
        text: str,
        start: int,
        kept: int,
        token_texts: Sequence[str] | None,
        token_bytes: Sequence[bytes] | None,
    ) -> None:
        """A piece at character ``start`` of the document, of whose tokens ``kept`` are read.

        ``token_texts`` and ``token_bytes`` (:class:`crossent.data.tokens.TokenPiece`) are
        needed without a prefix token and for a document cut short.
        """
        if kept == 0:  # cut where the previous piece ended
            self.cut, self._end = True, self._last_start + len(self._last)
            return
        self._runs += len(_WHITESPACE.findall(self._last))
        self._last, self._last_start = text, start
        if token_texts is None or token_bytes is None:
            return
        if self.first_unscored and start == 0:
            self.unscored_bytes = len(token_bytes[0])
            inside = whole_characters(token_texts[0], token_bytes[0])
            # words ending by then lie wholly inside: those before a run starting by then
            self.unscored_words = len(_WHITESPACE.findall(text[: inside + 1]))
        self._kept_bytes += sum(len(data) for data in token_bytes[:kept])
        if kept < len(token_bytes):
            self.cut, self._end = True, start + sum(len(part) for part in token_texts[:kept])

    @property
    def bytes(self) -> int:
        """The bytes the scored tokens cover."""
        kept = self._kept_bytes if self.cut else self.stored_bytes
        return kept - self.unscored_bytes

    @property
    def words(self) -> int:
        """The words with a character in a scored token."""
        if self.cut:
            last = sum(
                1
                for run in _WHITESPACE.finditer(self._last)
                if self._last_start + run.end() < self._end
            )
        else:
            last = len(_WHITESPACE.findall(self._last))
        return 1 + self._runs + last - self.unscored_words


class SparseCount(ScoredCount):
    """The bytes of a document that scattered scored tokens cover, for the conventions that
    leave context-only tokens between them (:mod:`crossent.data.conventions`); words are not
    counted (0, so word perplexity is left out).

    Fed like :class:`ScoredCount` (always with each token's bytes), then told each window's
    scored positions, in order, by :meth:`score`; it holds the byte counts of the tokens read
    but not yet passed, a window or so.
    """

    def __init__(self, stored_bytes: int) -> None:
        super().__init__(stored_bytes, first_unscored=False)
        self._lengths: list[int] = []  # bytes of the tokens from document position _offset on
        self._offset = 0
        self._scored_bytes = 0

    def add(
        self,
        text: str,
        start: int,
        kept: int,
        token_texts: Sequence[str] | None,
        token_bytes: Sequence[bytes] | None,
    ) -> None:
        """As :meth:`ScoredCount.add`; ``token_bytes`` is required."""
        super().add(text, start, kept, token_texts, token_bytes)
        if kept and token_bytes is not None:
            lengths = [len(data) for data in token_bytes[:kept]]
            self._lengths.extend(lengths)
            self.unscored_bytes += sum(lengths)

    def score(self, first: int, stop: int) -> None:
        """The document's tokens ``first, ..., stop - 1`` are scored (after earlier calls')."""
        scored = sum(self._lengths[first - self._offset : stop - self._offset])
        self._scored_bytes += scored
        self.unscored_bytes -= scored
        del self._lengths[: stop - self._offset]
        self._offset = stop

    @property
    def bytes(self) -> int:
        """The bytes the scored tokens cover."""
        return self._scored_bytes

    @property
    def words(self) -> int:
        """Not counted: 0."""
        return 0
