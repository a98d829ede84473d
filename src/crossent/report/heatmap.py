"""Texts as heatmaps of tokens, and the page around them that the evaluation and comparison share.

A heatmap is a document's text in which every scored token is a ``<span>`` coloured by its class
(:mod:`crossent.report.surprisal`); hovering, clicking or reaching it with the arrow keys shows a
tooltip built by the page's one script, ``heatmap.js``, from the page's one JSON block
(:class:`Payload`). :func:`heatmap_page` puts the tooltip's box, the block and the script into the
shell of :func:`crossent.report.page.page`.

* **Numbers in tooltips**: a probability with three significant digits, written as a decimal
  (``0.500``, ``0.00123``) from 0.001 up and in exponent form (``1.23e-5``) below; surprisal to
  three decimals in bits and in nats; the rank as an integer. To keep a page about 80 bytes per
  token beyond its text, each token's numbers are stored once in the JSON block (nats to four
  decimals, alternative probabilities to three significant digits, each alternative's text once
  in a shared table) and the tooltip is built from them on hover.
* **Token texts** are HTML-escaped and shown with whitespace kept (``white-space: pre-wrap``); a
  carriage return is written as ``&#13;`` because an HTML parser would turn a raw one into a line
  feed. In tooltips, a space is shown as ``␣``, a line feed as ``↵``, a tab as ``⇥``, a carriage
  return as ``␍`` and an empty text (the second token of a character split across tokens) as ``∅``.

Hover over a token for its tooltip, click it to pin the tooltip, or focus a heatmap (Tab) and move
through its tokens with the arrow keys; Escape hides the tooltip.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from html import escape
from importlib.resources import files
from typing import TYPE_CHECKING

from crossent.report.page import BASE_STYLE, bidi_attribute, name_title, page, short_name
from crossent.report.surprisal import COLOUR_STYLE, token_class

if TYPE_CHECKING:  # only the types: importing evaluation imports transformers
    from crossent.comparison import TokenDifference
    from crossent.evaluation import EvaluationResult, TokenScore

TOP_SHOWN = 5
NO_TOKENS_NOTE = (
    '<p class="note">This evaluation did not record per-token details, so there is no surprisal '
    "histogram and no heatmap; <code>evaluate(..., per_token=True)</code> records them.</p>"
)

_STYLE = (
    BASE_STYLE + "table.documents,table.largest,table.largest-segments,table.summary,table.ranking"
    "{display:block;overflow-x:auto}"
    # a model's path, or a stretch of text, wraps anywhere rather than widen the page
    "td[data-metric=model],table.ranking td:nth-child(2),table.largest-segments code"
    "{overflow-wrap:anywhere}"
    ".legend{display:flex;flex-wrap:wrap;gap:2px;align-items:center;font-size:12px}"
    ".legend span{padding:0 .4rem}"
    ".heat,.aligned{white-space:pre-wrap;overflow-wrap:anywhere;font:13px/1.7 ui-monospace,"
    "monospace;"
    "border:1px solid #ddd;padding:.5rem}"
    ".heat:focus{outline:2px solid #4a80c0}"
    ".heat span:empty{padding:0 2px}"
    ".heat .cur{outline:2px solid #000}"
    "svg.histogram{display:block;max-width:100%;height:auto}"
    "svg text{font:11px system-ui,sans-serif;fill:#333}"
    "svg line{stroke:#555}svg.histogram rect{stroke:#0006;stroke-width:.5}"
    "#tip{position:absolute;z-index:9;max-width:28rem;background:#fff;border:1px solid #888;"
    "box-shadow:0 2px 8px #0003;padding:.4rem .6rem;font-size:13px;pointer-events:none}"
    "#tip table{margin:.2rem 0}#tip th,#tip td{padding:0 .4rem;border:0}"
    "#tip code{background:#f0f0f0;padding:0 .2rem;white-space:pre}"
    ".tip-head{color:#555;margin-top:.3rem}" + COLOUR_STYLE
)

# Builds a tooltip from the JSON block when a token is hovered, clicked or reached by arrow keys.
# Token entries are [nats, rank, text, p, text, p, ...] (texts index data.texts; nats null when
# infinite); difference entries are [nats_a, nats_b, kl, index in set a, index in set b]. The
# page's policy allows it by the hash of this text, so it is read as it is, byte for byte.
_SCRIPT = files("crossent.report").joinpath("heatmap.js").read_text(encoding="utf-8")

# Every other set (a model of several, "m0", "m1", ...) is coloured by surprisal.
_COLOURED_BY = {"e": "surprisal", "a": "surprisal", "b": "surprisal", "d": "change in loss"}


@dataclass
class Payload:
    """The page's one JSON block: per-token numbers by heatmap set, each alternative text once.

    Entries are written as JSON text as they are made, which takes about half the time, for 100k
    tokens, of building lists of rounded floats and encoding them at the end.
    """

    texts: list[str] = field(default_factory=list)
    sets: dict[str, list[str]] = field(default_factory=dict)
    _indices: dict[str, int] = field(default_factory=dict)

    def text(self, text: str) -> int:
        """The index of ``text`` in the shared table, adding it the first time."""
        if text not in self._indices:
            self._indices[text] = len(self.texts)
            self.texts.append(text)
        return self._indices[text]

    def to_script(self) -> str:
        """The block as a non-executed script element; "<" escaped so no text can close it."""
        texts = json.dumps(self.texts, ensure_ascii=False, separators=(",", ":"))
        sets = ",".join(f'"{key}":[{",".join(entries)}]' for key, entries in self.sets.items())
        content = f'{{"texts":{texts},"sets":{{{sets}}}}}'.replace("<", "\\u003c")
        return f'<script type="application/json" id="crossent-data">{content}</script>'


def heatmap_page(title: str, body: str, payload: Payload | None) -> str:
    """An evaluation or comparison page: the tooltip's box, and the data and script if any."""
    body += '\n<div id="tip" role="tooltip" aria-live="polite" hidden></div>'
    if payload is None:
        return page(title, body, style=_STYLE)
    return page(title, f"{body}\n{payload.to_script()}", style=_STYLE, script=_SCRIPT)


def json_number(value: float, spec: str) -> str:
    """``value`` as a JSON number in format ``spec``; null when infinite or NaN.

    Example:
        >>> json_number(0.123456, ".4f"), json_number(float("inf"), ".4f")
        ('0.1235', 'null')
    """
    return format(value, spec) if math.isfinite(value) else "null"


def escape_text(text: str) -> str:
    """Text for an element's content: escaped, and a CR kept as CR (a parser turns it into LF)."""
    return escape(text, quote=False).replace("\r", "&#13;")


def group_by_document(
    result: EvaluationResult, tokens: Sequence[TokenScore | TokenDifference]
) -> list[list[int]]:
    """For each document of ``result``, the indices into ``tokens`` of its tokens, in order."""
    groups: list[list[int]] = [[] for _ in result.documents]
    for index, token in enumerate(tokens):
        groups[token.document].append(index)
    return groups


def heatmap(name: str, key: str, first: int, spans: list[str], note: str = "") -> str:
    """One document's text; its spans are entries ``first``, ``first + 1``, ... of set ``key``."""
    shown = escape(short_name(name))
    heading = f"<h3{name_title(name)}>{shown}</h3>"
    if not spans:
        return f'{heading}<p class="note">No scored tokens.</p>'
    coloured_by = _COLOURED_BY.get(key, "surprisal")
    return (
        f"{heading}{note}"
        f'<div class="heat" data-set="{key}" data-first="{first}" tabindex="0" '
        f'aria-label="{shown}: tokens coloured by {coloured_by}; arrow keys move '
        f'between tokens">{"".join(spans)}</div>'
    )


def score_heatmaps(
    result: EvaluationResult, key: str, payload: Payload
) -> tuple[str, dict[tuple[int, int], int]]:
    """Every document's heatmap, its tokens added to ``payload.sets[key]``.

    Returns:
        The HTML, and each token's index in the set by (document, position).
    """
    entries = payload.sets.setdefault(key, [])
    positions: dict[tuple[int, int], int] = {}
    sections = []
    for document, indices in zip(
        result.documents, group_by_document(result, result.tokens), strict=True
    ):
        tokens = [result.tokens[index] for index in indices]
        first = len(entries)
        for token in tokens:
            positions[token.document, token.position] = len(entries)
            entries.append(_score_entry(token, payload))
        note = ""
        if tokens and tokens[0].start > 0:
            note = (
                f'<p class="note">The first {tokens[0].start} characters are the document\'s '
                "first token, which is context only without a prefix token, and are not "
                "shown.</p>"
            )
        spans = [
            f'<span class="{token_class(token.nats)}"{bidi_attribute(token.text)}>'
            f"{escape_text(token.text)}</span>"
            for token in tokens
        ]
        sections.append(heatmap(document.name, key, first, spans, note))
    return "\n".join(sections), positions


def _score_entry(token: TokenScore, payload: Payload) -> str:
    """``[nats, rank, text, p, text, p, ...]`` for the top alternatives, as JSON."""
    alternatives = "".join(
        f",{payload.text(text)},{probability:.3g}"
        for text, probability in zip(
            token.top_texts[:TOP_SHOWN], token.top_probs[:TOP_SHOWN], strict=True
        )
    )
    return f"[{json_number(token.nats, '.4f')},{token.rank}{alternatives}]"
