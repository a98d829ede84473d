"""Two models with different tokenizers, lined up on the same characters.

Their tokens differ, so no token of one is a token of the other; but wherever both tokenizations
break the text at the same byte, everything before is scored by whole tokens of each model. The
text cut at every such common boundary gives segments (usually words or their pieces) that both
models score whole: a segment's nats under a model are the sum of its tokens' nats, which is
also the sum of the per-byte surprisal of :func:`crossent.comparison.statistics.byte_surprisal`
over the segment's bytes (each token's nats spread evenly over its bytes). The page's aligned
heatmap colours these segments by B's minus A's nats, and the "where do they differ" list ranks
them by its size, so both point at the same characters for both models.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import accumulate, pairwise
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from crossent.evaluation import EvaluationResult, TokenScore


@dataclass(frozen=True, slots=True)
class SegmentDifference:
    """A stretch of a document that both models score with whole tokens.

    Attributes:
        document: index of the document.
        start: the segment's first byte, as an offset into the document's UTF-8 bytes.
        text: the segment's text (bytes that are not whole characters shown as U+FFFD).
        bytes: how many bytes it covers.
        nats_a: A's summed ``-ln p`` over the tokens inside it, nats.
        nats_b: B's, nats.
    """

    document: int
    start: int
    text: str
    bytes: int
    nats_a: float
    nats_b: float


def _cumulative(tokens: list[TokenScore], start: int) -> dict[int, float]:
    """Byte offset of each token boundary -> nats of the tokens before it."""
    ends = accumulate((token.num_bytes for token in tokens), initial=start)
    totals = accumulate((token.nats for token in tokens), initial=0.0)
    return dict(zip(ends, totals, strict=True))


def aligned_segments(a: EvaluationResult, b: EvaluationResult) -> list[SegmentDifference]:
    """Every segment both models score whole, in document order (see the module docstring).

    Needs per-token details, each document's tokens consecutive from its first scored one.
    """
    by_document: dict[str, list[list[TokenScore]]] = {
        "a": [[] for _ in a.documents],
        "b": [[] for _ in b.documents],
    }
    for key, result in (("a", a), ("b", b)):
        for token in result.tokens:
            by_document[key][token.document].append(token)
    segments = []
    for index, (doc_a, doc_b) in enumerate(zip(a.documents, b.documents, strict=True)):
        tokens_a, tokens_b = by_document["a"][index], by_document["b"][index]
        cum_a = _cumulative(tokens_a, doc_a.unscored_bytes)
        cum_b = _cumulative(tokens_b, doc_b.unscored_bytes)
        text = b"".join(t.utf8 if t.utf8 is not None else t.text.encode() for t in tokens_a)
        common = sorted(set(cum_a) & set(cum_b))
        for start, end in pairwise(common):
            piece = text[start - doc_a.unscored_bytes : end - doc_a.unscored_bytes]
            segments.append(
                SegmentDifference(
                    index,
                    start,
                    piece.decode("utf-8", errors="replace"),
                    end - start,
                    cum_a[end] - cum_a[start],
                    cum_b[end] - cum_b[start],
                )
            )
    return segments
