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
"""

from __future__ import annotations

import re
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
