"""Reading a report's markup back in the static tests: tags, tables, heatmaps and references."""

from __future__ import annotations

import re
from html.parser import HTMLParser


class ParsedPage(HTMLParser):
    """What the tests check of a page, collected in one pass over its markup.

    Attributes:
        tags: every start tag with its attributes, in order.
        style: the text of the style sheet.
        rows: each table's rows (lists of cell texts, th and td alike), by the table's class.
        heatmaps: each heatmap's text, by its ``data-set``.
        data_block: the text of the JSON block (``<script type="application/json">``).
        ids: every ``id``; references: every ``#id`` an ``href`` or a ``url(#id)`` points at.
        styled: the tags that carry a ``style`` attribute.
    """

    def __init__(self, page: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.style = ""
        self.rows: dict[str, list[list[str]]] = {}
        self.heatmaps: dict[str, list[str]] = {}
        self.data_block = ""
        self.ids: list[str] = []
        self.references: list[str] = []
        self.styled: list[str] = []
        self._in_style = False
        self._in_data = False
        self._table = ""
        self._row: list[str] | None = None
        self._cell: list[str] | None = None
        self._heatmap: list[str] | None = None
        self.feed(page)
        self.close()

    def count(self, tag: str) -> int:
        """How many ``tag`` elements the page has."""
        return sum(name == tag for name, _ in self.tags)

    def policies(self) -> list[str | None]:
        """The content of every Content-Security-Policy meta tag (a page should have one)."""
        return [
            attributes.get("content")
            for tag, attributes in self.tags
            if tag == "meta" and attributes.get("http-equiv") == "Content-Security-Policy"
        ]

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        self.tags.append((tag, attributes))
        self._note_attributes(tag, attrs)
        self._in_style = tag == "style"
        self._in_data = tag == "script" and attributes.get("type") == "application/json"
        if tag == "table":
            self._table = attributes.get("class") or ""
        elif tag == "tr":
            self._row = []
            self.rows.setdefault(self._table, []).append(self._row)
        elif tag in {"td", "th"}:
            self._cell = []
        elif tag == "div" and "heat" in (attributes.get("class") or ""):
            self._heatmap = self.heatmaps.setdefault(f"{attributes['data-set']}", [])
            self._heatmap.append("")

    def _note_attributes(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if name == "id" and value:
                self.ids.append(value)
            if name in ("href", "xlink:href") and value and value.startswith("#"):
                self.references.append(value[1:])
            if name == "style":
                self.styled.append(tag)
            if value and "url(#" in value:
                self.references += re.findall(r"url\(#([^)]+)\)", value)

    def handle_endtag(self, tag: str) -> None:
        self._in_style = False
        self._in_data = False
        if tag in {"td", "th"} and self._row is not None and self._cell is not None:
            self._row.append("".join(self._cell))
            self._cell = None
        if tag == "div":
            self._heatmap = None

    def handle_data(self, data: str) -> None:
        if self._in_style:
            self.style += data
        if self._in_data:
            self.data_block += data
        if self._cell is not None:
            self._cell.append(data)
        if self._heatmap is not None:
            self._heatmap[-1] += data
