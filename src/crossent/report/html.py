"""Self-contained HTML reports of an evaluation and of a comparison of two models.

A report is one HTML file that a browser shows without any network request: its style, script and
histogram (SVG) are inline, and a Content-Security-Policy meta tag lets the browser load nothing
else and run only that one script and style sheet (both allowed by their SHA-256 hashes).
:func:`page` builds that shell, for these reports and the others of :mod:`crossent.report`.

Conventions shared by both reports:

* **Surprisal** is ``-log2 p(token)``, in bits, computed from each token's nats by
  :func:`crossent.metrics.nats_to_bits`; tooltips show bits and nats.
* **Heatmap colours** bin a token's surprisal into eight classes of 2 bits: [0, 2), [2, 4), ...,
  [12, 14) and 14 bits or more (p below 2 ** -14, and an infinite surprisal). The scale is fixed,
  so colours mean the same in every report.
* **Histogram bins** are 0.5 bits wide from 0, as many as the largest surprisal needs, at most 64;
  the 64th then also holds everything from 31.5 bits up.
* **Numbers in tooltips**: a probability with three significant digits, written as a decimal
  (``0.500``, ``0.00123``) from 0.001 up and in exponent form (``1.23e-5``) below; surprisal to
  three decimals in bits and in nats; the rank as an integer. To keep a page about 80 bytes per
  token beyond its text, each token's numbers are stored once in a JSON block (nats to four
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

import base64
import bisect
import hashlib
import itertools
import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from html import escape
from typing import TYPE_CHECKING

from crossent.metrics import NLLResult, nats_to_bits

if TYPE_CHECKING:  # only the types: importing evaluation imports transformers
    from crossent.comparison import ComparisonResult, TokenDifference
    from crossent.evaluation import EvaluationResult, TokenScore

# Surprisal colour classes: light (likely) to dark red (surprising), one per 2 bits.
SURPRISAL_CLASS_BITS = 2.0
_SURPRISAL_COLOURS = (
    "#fbfaf2", "#fdf0bd", "#fddd88", "#fdbd63", "#f8964b", "#ec663d", "#d1393b", "#9b1a40",
)  # fmt: skip
# Difference classes, by B's surprisal minus A's in bits: blue where B is more confident.
DIFFERENCE_EDGES_BITS = (-8.0, -4.0, -2.0, -0.5, 0.5, 2.0, 4.0, 8.0)
_DIFFERENCE_COLOURS = (
    "#24518f", "#4a80c0", "#8db3dd", "#cfe0f1", "#f4f4f4", "#f5d2c6", "#e99781", "#cf5646",
    "#9c2129",
)  # fmt: skip
_DARK_CLASSES = ("c6", "c7", "d0", "d1", "d8")
HISTOGRAM_BIN_BITS = 0.5
HISTOGRAM_MAX_BINS = 64
TOP_SHOWN = 5
_NO_TOKENS_NOTE = (
    '<p class="note">This evaluation did not record per-token details, so there is no surprisal '
    "histogram and no heatmap; <code>evaluate(..., per_token=True)</code> records them.</p>"
)

# The look every crossent page shares: type, headings, number tables, the headline and notes.
BASE_STYLE = (
    ":root{font:15px/1.45 system-ui,sans-serif;color:#1c1c1e;background:#fff}"
    "body{max-width:76rem;margin:1.5rem auto;padding:0 1rem}"
    "h1{font-size:1.5rem;margin:0 0 .3rem}"
    "h2{font-size:1.2rem;margin-top:2rem;border-bottom:1px solid #ddd}"
    "h3{font-size:1rem;margin:1.2rem 0 .4rem}"
    "table{border-collapse:collapse;font-variant-numeric:tabular-nums;margin:.4rem 0}"
    "th,td{padding:.15rem .6rem;text-align:right;border-bottom:1px solid #eee}"
    "th:first-child,td:first-child{text-align:left}"
    "tfoot td{font-weight:600;border-top:1px solid #999}"
    ".headline{font-size:1.1rem}.headline b{font-size:1.8rem;margin-right:.2rem}"
    ".note{color:#555;font-style:italic}"
)
_STYLE = (
    BASE_STYLE
    + "table.documents,table.largest{display:block;overflow-x:auto}"  # many columns, long names
    ".legend{display:flex;flex-wrap:wrap;gap:2px;align-items:center;font-size:12px}"
    ".legend span{padding:0 .4rem}"
    ".heat{white-space:pre-wrap;overflow-wrap:anywhere;font:13px/1.7 ui-monospace,monospace;"
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
    ".tip-head{color:#555;margin-top:.3rem}"
    + "".join(
        f".c{index}{{background:{colour};fill:{colour}}}"
        for index, colour in enumerate(_SURPRISAL_COLOURS)
    )
    + "".join(
        f".d{index}{{background:{colour};fill:{colour}}}"
        for index, colour in enumerate(_DIFFERENCE_COLOURS)
    )
    + ",".join(f".{name}" for name in _DARK_CLASSES)
    + "{color:#fff}"
)

# Builds a tooltip from the JSON block when a token is hovered, clicked or reached by arrow keys.
# Token entries are [nats, rank, text, p, text, p, ...] (texts index data.texts; nats null when
# infinite); difference entries are [nats_a, nats_b, kl, index in set a, index in set b].
_SCRIPT = """"use strict";
(() => {
  const data = JSON.parse(document.getElementById("crossent-data").textContent);
  const tip = document.getElementById("tip");
  let current = null;
  let pinned = false;
  const shown = (s) => s === "" ? "\\u2205" : s.replace(/ /g, "\\u2423")
    .replace(/\\n/g, "\\u21b5").replace(/\\t/g, "\\u21e5").replace(/\\r/g, "\\u240d");
  const num = (x) => x === null ? Infinity : x;
  const prob = (p) => p === 0 ? "0" : p >= 0.001 ? p.toPrecision(3) : p.toExponential(2);
  const fixed = (x, digits) => Number.isFinite(x) ? x.toFixed(digits) : "\\u221e";
  const el = (tag, cls, text) => {
    const node = document.createElement(tag);
    if (cls) node.className = cls;
    if (text !== undefined) node.textContent = text;
    return node;
  };
  const code = (text, cls) => {
    const cell = el("td", cls);
    cell.append(el("code", "", shown(text)));
    return cell;
  };
  const row = (label, ...cells) => {
    const tr = el("tr");
    tr.append(el("th", "", label), ...cells);
    return tr;
  };
  const td = (cls, text) => el("td", cls, text);
  const spanOf = (node) => node instanceof HTMLSpanElement &&
    node.parentElement.classList.contains("heat") ? node : null;
  // A span's index among its text's spans, found by one walk over each text when first needed:
  // a search per hover would take milliseconds in a text of 100k tokens.
  const indices = new WeakMap();
  const indexOf = (span) => {
    if (!indices.has(span)) {
      Array.prototype.forEach.call(span.parentElement.children, (s, i) => indices.set(s, i));
    }
    return indices.get(span);
  };

  function tokenTip(entry) {
    const nats = num(entry[0]);
    const table = el("table");
    table.append(
      row("p", td("tip-p", prob(Math.exp(-nats)))),
      row("surprisal", td("tip-bits", fixed(nats / Math.LN2, 3) + " bits")),
      row("", td("tip-nats", fixed(nats, 3) + " nats")),
      row("rank", td("tip-rank", String(entry[1]))));
    const alternatives = el("table", "tip-alts");
    for (let i = 2; i < entry.length; i += 2) {
      const tr = el("tr", "tip-alt");
      tr.append(code(data.texts[entry[i]]), td("tip-alt-p", prob(entry[i + 1])));
      alternatives.append(tr);
    }
    return [table, el("div", "tip-head", "most likely next tokens"), alternatives];
  }

  function differenceTip(entry) {
    const [natsA, natsB] = [num(entry[0]), num(entry[1])];
    const a = entry[3] === null ? null : data.sets.a[entry[3]];
    const b = entry[4] === null ? null : data.sets.b[entry[4]];
    const top = (scores) => scores && scores.length > 2 ? code(data.texts[scores[2]]) : td("", "");
    const table = el("table");
    table.append(
      row("", el("th", "", "A"), el("th", "", "B")),
      row("p", td("tip-p-a", prob(Math.exp(-natsA))), td("tip-p-b", prob(Math.exp(-natsB)))),
      row("surprisal, bits", td("tip-bits-a", fixed(natsA / Math.LN2, 3)),
        td("tip-bits-b", fixed(natsB / Math.LN2, 3))),
      row("rank", td("tip-rank-a", a ? String(a[1]) : ""), td("tip-rank-b", b ? String(b[1]) : "")),
      row("top-1", top(a), top(b)));
    const change = (natsB - natsA) / Math.LN2;
    const summary = el("table");
    summary.append(
      row("B \\u2212 A", td("tip-delta", (change > 0 ? "+" : "") + fixed(change, 3) + " bits")),
      row("KL(A\\u2016B)", td("tip-kl", fixed(entry[2], 4) + " nats")));
    return [table, summary];
  }

  function show(span) {
    const box = span.parentElement;
    const entry = data.sets[box.dataset.set][Number(box.dataset.first) + indexOf(span)];
    const title = el("div", "tip-text");
    title.append(el("code", "", shown(span.textContent)));
    tip.replaceChildren(title, ...(box.dataset.set === "d" ? differenceTip : tokenTip)(entry));
    tip.hidden = false;
    tip.style.left = "0px";  // measure the width the tooltip takes when it is not squeezed
    const rect = span.getBoundingClientRect();
    const width = document.documentElement.clientWidth;
    const left = Math.max(4, Math.min(rect.left, width - tip.offsetWidth - 4));
    const below = rect.bottom + 4 + tip.offsetHeight <= window.innerHeight;
    const top = below || rect.top < tip.offsetHeight + 4 ? rect.bottom + 4
      : rect.top - tip.offsetHeight - 4;
    tip.style.left = (left + window.scrollX) + "px";
    tip.style.top = (top + window.scrollY) + "px";
    if (current) current.classList.remove("cur");
    current = span;
    span.classList.add("cur");
  }

  function hide() {
    tip.hidden = true;
    if (current) current.classList.remove("cur");
    current = null;
    pinned = false;
  }

  document.addEventListener("mouseover", (event) => {
    const span = spanOf(event.target);
    if (span && !pinned) show(span);
  });
  document.addEventListener("mouseout", (event) => {
    if (!pinned && spanOf(event.target) && !spanOf(event.relatedTarget)) hide();
  });
  document.addEventListener("click", (event) => {
    const span = spanOf(event.target);
    if (!span || (pinned && span === current)) {
      hide();
      return;
    }
    show(span);
    pinned = true;
  });
  document.addEventListener("keydown", (event) => {
    if (event.key === "Escape") {
      hide();
      return;
    }
    const box = event.target;
    if (!(box instanceof HTMLElement) || !box.classList.contains("heat")) return;
    const last = box.children.length - 1;
    let i = current && current.parentElement === box ? indexOf(current) : -1;
    if (event.key === "ArrowRight") i = Math.min(i + 1, last);
    else if (event.key === "ArrowLeft") i = Math.max(i - 1, 0);
    else return;
    event.preventDefault();
    if (i < 0) return;
    box.children[i].scrollIntoView({block: "nearest"});
    show(box.children[i]);
    pinned = true;
  });
})();
"""


def _sha256(source: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(source.encode()).digest()).decode() + "'"


def render_evaluation_report(result: EvaluationResult, *, title: str | None = None) -> str:
    """One self-contained HTML page showing an evaluation (see the module docstring).

    The page holds a summary (the model, window, stride, prefix and the totals in every unit, bits
    per byte as the headline), a table with one row per document and the totals as its footer,
    a histogram of per-token surprisal in bits, and each document's text as a heatmap in which
    every scored token is a ``<span>`` coloured by its surprisal, with a legend of the colour
    classes and a tooltip per token: its text, probability, surprisal in bits and nats, rank,
    and the model's five most likely tokens with their probabilities.

    Without a prefix token a document's first token is never scored, so its text is not in
    ``result.tokens`` and its heatmap starts at the first scored token (the page says so). When
    ``result.tokens`` is empty the page says that per-token details were not recorded and leaves
    out the histogram and heatmaps.

    Args:
        result: what :func:`crossent.evaluation.evaluate` returned, ideally with per-token
            details.
        title: the page title; default ``"Cross-entropy of <model>"``.

    Returns:
        The page, about 80 bytes per token plus the texts' own bytes; write it with
        :func:`crossent.files.write_text_atomically`.
    """
    title = title if title is not None else f"Cross-entropy of {result.model}"
    payload = _Payload()
    parts = [
        f"<h1>{escape(title)}</h1>",
        _headline([("", result)]),
        "<h2>Summary</h2>",
        _summary_table([("", result)]),
        "<h2>Documents</h2>",
        _documents_table(result),
    ]
    if result.tokens:
        bins = _histogram_bin_count([result])
        parts += [
            "<h2>Surprisal per token</h2>",
            _histogram_svg(result.tokens, bins),
            "<h2>Texts, coloured by surprisal</h2>",
            _surprisal_legend(),
            _score_heatmaps(result, "e", payload)[0],
        ]
    else:
        parts.append(_NO_TOKENS_NOTE)
    return _page(title, "\n".join(parts), payload if result.tokens else None)


def render_comparison_report(comparison: ComparisonResult, *, title: str | None = None) -> str:
    """One self-contained HTML page comparing two models on the same texts (A and B).

    The page holds both models' bits per byte as the headline (it divides by the text's bytes, so
    it is comparable across tokenizers), their summaries side by side, and for each model its
    per-document table, surprisal histogram (both on the same bins) and heatmaps, as in
    :func:`render_evaluation_report`. When the two models share a tokenizer it also holds the
    summary of the per-token ``KL(P_A || P_B)`` (mean, percentiles, top-1 agreement), the table of
    the tokens whose loss changed most, and a heatmap of each token's change in surprisal
    (B's minus A's, in bits, binned at -8, -4, -2, -0.5, 0.5, 2, 4 and 8 bits on a diverging
    scale: blue where B is more confident); its tooltip shows both models' probability,
    surprisal, rank and top-1 token, the change and the KL divergence.

    Args:
        comparison: what :func:`crossent.comparison.compare` returned.
        title: the page title; default ``"<model A> vs <model B>"``.

    Returns:
        The page.
    """
    a, b = comparison.a, comparison.b
    title = title if title is not None else f"{a.model} vs {b.model}"
    payload = _Payload()
    named = [("A", a), ("B", b)]
    parts = [
        f"<h1>{escape(title)}</h1>",
        f"<p>A is <code>{escape(a.model)}</code>, B is <code>{escape(b.model)}</code>.</p>",
        _headline(named),
        "<h2>Summary</h2>",
        _summary_table(named),
    ]
    positions: dict[str, dict[tuple[int, int], int]] = {}
    model_parts = []
    bins = _histogram_bin_count([a, b])
    for (name, result), key in zip(named, ("a", "b"), strict=True):
        model_parts += [f"<h2>Model {name}: {escape(result.model)}</h2>", _documents_table(result)]
        if result.tokens:
            heatmaps, positions[key] = _score_heatmaps(result, key, payload)
            model_parts += [
                "<h3>Surprisal per token</h3>",
                _histogram_svg(result.tokens, bins),
                _surprisal_legend(),
                heatmaps,
            ]
        else:
            model_parts.append(_NO_TOKENS_NOTE)
    if comparison.shared_tokenizer:
        parts += _token_comparison(comparison, positions, payload)
    else:
        parts.append(
            '<p class="note">The two models tokenize the texts differently, so their tokens '
            "cannot be compared one by one: no KL divergence and no per-token differences. Bits "
            "per byte remains comparable.</p>"
        )
    parts += model_parts
    return _page(title, "\n".join(parts), payload if payload.sets else None)


@dataclass
class _Payload:
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


def _number(value: float, spec: str) -> str:
    """``value`` as a JSON number in format ``spec``; null when infinite or NaN."""
    return format(value, spec) if math.isfinite(value) else "null"


def page(title: str, body: str, *, style: str, script: str | None = None) -> str:
    """A self-contained HTML page: ``body`` with one inline style sheet and at most one script.

    The page's Content-Security-Policy lets nothing load and allows only this ``style`` and
    ``script``, by their SHA-256 hashes (no script at all when there is none), so a text shown in
    the page can never style or script it. Every crossent report is built by this function.

    Args:
        title: the page title, escaped here.
        body: the content of ``<body>``, already HTML; the script comes after it.
        style: the one style sheet, usually :data:`BASE_STYLE` and the page's own rules.
        script: the one script, or None.

    Returns:
        The page, ending with a newline.
    """
    # A meta tag cannot set frame-ancestors, which only matters when the file is served.
    scripts = "'none'" if script is None else _sha256(script)
    policy = (
        f"default-src 'none'; style-src {_sha256(style)}; script-src {scripts}; "
        "base-uri 'none'; form-action 'none'"
    )
    script_element = "" if script is None else f"<script>{script}</script>\n"
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f'<meta http-equiv="Content-Security-Policy" content="{policy}">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{escape(title)}</title>\n<style>{style}</style>\n</head>\n<body>\n"
        f"{body}\n{script_element}</body>\n</html>\n"
    )


def _page(title: str, body: str, payload: _Payload | None) -> str:
    """An evaluation or comparison page: the tooltip's box, and the data and script if any."""
    body += '\n<div id="tip" role="tooltip" aria-live="polite" hidden></div>'
    if payload is None:
        return page(title, body, style=_STYLE)
    return page(title, f"{body}\n{payload.to_script()}", style=_STYLE, script=_SCRIPT)


def _optional(value: float | None, digits: int) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


# The metrics of an NLLResult as the reports show them: (key, header, cell), digits as on the
# terminal. The key names the NLLResult field and is each cell's data-metric attribute.
_METRICS: tuple[tuple[str, str, Callable[[NLLResult], str]], ...] = (
    ("tokens", "tokens", lambda m: str(m.tokens)),
    ("nats_per_token", "nats/token", lambda m: f"{m.nats_per_token:.4f}"),
    ("bits_per_token", "bits/token", lambda m: f"{m.bits_per_token:.4f}"),
    ("perplexity", "perplexity", lambda m: f"{m.perplexity:.3f}"),
    ("bytes", "bytes", lambda m: str(m.bytes)),
    ("bits_per_byte", "bits/byte", lambda m: _optional(m.bits_per_byte, 4)),
    ("byte_perplexity", "byte perplexity", lambda m: _optional(m.byte_perplexity, 4)),
    ("words", "words", lambda m: str(m.words)),
    ("word_perplexity", "word perplexity", lambda m: _optional(m.word_perplexity, 3)),
    ("accuracy", "top-1 accuracy", lambda m: f"{m.accuracy:.4f}"),
)


def cell(text: str, *, metric: str = "", model: str = "") -> str:
    """A table cell showing ``text``, escaped; ``metric`` and ``model`` become data attributes."""
    attributes = f' data-metric="{metric}"' if metric else ""
    attributes += f' data-model="{model}"' if model else ""
    return f"<td{attributes}>{escape(text)}</td>"


def _headline(named: Sequence[tuple[str, EvaluationResult]]) -> str:
    parts = [
        f"<b>{escape(_optional(result.totals.bits_per_byte, 4))}</b> bits per byte"
        + (f" ({name})" if name else "")
        for name, result in named
    ]
    return f'<p class="headline">{" &nbsp; ".join(parts)}</p>'


def _summary_table(named: Sequence[tuple[str, EvaluationResult]]) -> str:
    """One column per result; cells carry data-metric (and data-model when named)."""
    settings: list[tuple[str, str, Callable[[EvaluationResult], str]]] = [
        ("model", "model", lambda r: r.model),
        ("window", "window", lambda r: str(r.window)),
        ("stride", "stride", lambda r: str(r.stride)),
        ("prefix", "prefix", lambda r: r.prefix),
        ("documents", "documents", lambda r: str(len(r.documents))),
    ]
    rows = [
        f"<tr><th>{escape(header)}</th>"
        + "".join(cell(show(result), metric=key, model=name) for name, result in named)
        + "</tr>"
        for key, header, show in settings
    ]
    rows += [
        f"<tr><th>{escape(header)}</th>"
        + "".join(cell(show(result.totals), metric=key, model=name) for name, result in named)
        + "</tr>"
        for key, header, show in _METRICS
    ]
    head = "".join(f"<th>{escape(name)}</th>" for name, _ in named) if len(named) > 1 else ""
    head_row = f"<thead><tr><th></th>{head}</tr></thead>" if head else ""
    return f'<table class="summary">{head_row}<tbody>{"".join(rows)}</tbody></table>'


def _documents_table(result: EvaluationResult) -> str:
    """One row per document, the totals as the footer."""

    def row(name: str, metrics: NLLResult) -> str:
        cells = "".join(cell(show(metrics), metric=key) for key, _, show in _METRICS)
        return f"<tr><td>{escape(name)}</td>{cells}</tr>"

    head = "".join(f"<th>{escape(header)}</th>" for _, header, _ in _METRICS)
    body = "".join(row(document.name, document.result()) for document in result.documents)
    return (
        f'<table class="documents"><thead><tr><th>document</th>{head}</tr></thead>'
        f"<tbody>{body}</tbody><tfoot>{row('total', result.totals)}</tfoot></table>"
    )


def _bin(value: float, width: float, count: int) -> int:
    """The index of ``value``'s bin of ``width`` from 0; the first and last bins are open-ended.

    Anything at or above ``width * count`` (infinity and NaN included) lands in the last bin, and
    a value below 0 (float noise in a loss) in the first.
    """
    if not value < width * count:
        return count - 1
    return max(int(value // width), 0)


def _surprisal_class(nats: float) -> int:
    return _bin(nats_to_bits(nats), SURPRISAL_CLASS_BITS, len(_SURPRISAL_COLOURS))


def _surprisal_legend() -> str:
    last = len(_SURPRISAL_COLOURS) - 1
    labels = [
        f"{index * SURPRISAL_CLASS_BITS:g}\u2013{(index + 1) * SURPRISAL_CLASS_BITS:g}"
        for index in range(last)
    ] + [f"\u2265 {last * SURPRISAL_CLASS_BITS:g}"]
    swatches = "".join(
        f'<span class="c{index}">{label}</span>' for index, label in enumerate(labels)
    )
    return (
        '<p class="legend">Surprisal, bits (p = 2<sup>\u2212bits</sup>): '
        f'{swatches}</p><p class="note">Hover over a token for its numbers, click to pin, or '
        "focus a text with Tab and move with the arrow keys.</p>"
    )


def _difference_legend() -> str:
    edges = [f"{edge:g}" for edge in DIFFERENCE_EDGES_BITS]
    labels = [f"< {edges[0]}"]
    labels += [f"{low}\u2013{high}" for low, high in itertools.pairwise(edges)]
    labels += [f"\u2265 {edges[-1]}"]
    swatches = "".join(
        f'<span class="d{index}">{label}</span>' for index, label in enumerate(labels)
    )
    return (
        '<p class="legend">Change in surprisal, B \u2212 A, bits (blue: B more confident): '
        f"{swatches}</p>"
    )


def _histogram_bin_count(results: Sequence[EvaluationResult]) -> int:
    """Bins enough for the largest finite surprisal of any of the results, at most the cap."""
    largest = max(
        (
            nats_to_bits(token.nats)
            for result in results
            for token in result.tokens
            if math.isfinite(token.nats)
        ),
        default=0.0,
    )
    return _bin(largest, HISTOGRAM_BIN_BITS, HISTOGRAM_MAX_BINS) + 1


def _histogram_svg(tokens: Sequence[TokenScore], bins: int) -> str:
    """Bars of how many tokens fall in each 0.5-bit surprisal bin; each carries data-count."""
    counts = [0] * bins
    for token in tokens:
        counts[_bin(nats_to_bits(token.nats), HISTOGRAM_BIN_BITS, bins)] += 1
    open_ended = any(not nats_to_bits(token.nats) < HISTOGRAM_BIN_BITS * bins for token in tokens)
    width, height, left, bottom, top = 720.0, 230.0, 56.0, 40.0, 12.0
    plot_width, plot_height = width - left - 12.0, height - bottom - top
    bar = plot_width / bins
    tallest = max(counts)
    bars = []
    for index, count in enumerate(counts):
        low = index * HISTOGRAM_BIN_BITS
        is_open = open_ended and index == bins - 1
        high = "inf" if is_open else f"{low + HISTOGRAM_BIN_BITS:g}"
        span = f"\u2265 {low:g}" if is_open else f"{low:g}\u2013{high}"
        bar_height = plot_height * count / tallest
        bars.append(
            f'<rect class="c{_bin(low, SURPRISAL_CLASS_BITS, len(_SURPRISAL_COLOURS))}" '
            f'x="{left + index * bar:.2f}" y="{top + plot_height - bar_height:.2f}" '
            f'width="{max(bar - 1.0, 0.5):.2f}" height="{bar_height:.2f}" '
            f'data-count="{count}" data-from="{low:g}" data-to="{high}">'
            f"<title>{span} bits: {count} tokens</title></rect>"
        )
    step = 1 if bins <= 24 else 2 if bins <= 48 else 4  # x labels every 1, 2 or 4 bits
    ticks = "".join(
        f'<text x="{left + bits * bar / HISTOGRAM_BIN_BITS:.2f}" y="{height - bottom + 14}" '
        f'text-anchor="middle">{bits}</text>'
        for bits in range(0, int(bins * HISTOGRAM_BIN_BITS) + 1, step)
    )
    baseline = top + plot_height
    return (
        f'<svg class="histogram" viewBox="0 0 {width:g} {height:g}" width="{width:g}" '
        f'height="{height:g}" role="img" aria-label="Histogram of surprisal per token, bits">'
        + "".join(bars)
        + f'<line x1="{left}" y1="{baseline}" x2="{width - 12}" y2="{baseline}"/>'
        f'<line x1="{left}" y1="{top}" x2="{left}" y2="{baseline}"/>'
        f'<text x="{left - 6}" y="{top + 4}" text-anchor="end">{tallest}</text>'
        f'<text x="{left - 6}" y="{baseline}" text-anchor="end">0</text>'
        f'<text x="{left - 40}" y="{top + plot_height / 2}" text-anchor="middle" '
        f'transform="rotate(-90 {left - 40} {top + plot_height / 2})">tokens</text>'
        + ticks
        + f'<text x="{left + plot_width / 2}" y="{height - 6}" text-anchor="middle">'
        "surprisal per token, bits (\u2212log\u2082 p)</text></svg>"
    )


def _escape_text(text: str) -> str:
    """Text for an element's content: escaped, and a CR kept as CR (a parser turns it into LF)."""
    return escape(text, quote=False).replace("\r", "&#13;")


def _score_entry(token: TokenScore, payload: _Payload) -> str:
    """``[nats, rank, text, p, text, p, ...]`` for the top alternatives, as JSON."""
    alternatives = "".join(
        f",{payload.text(text)},{probability:.3g}"
        for text, probability in zip(
            token.top_texts[:TOP_SHOWN], token.top_probs[:TOP_SHOWN], strict=True
        )
    )
    return f"[{_number(token.nats, '.4f')},{token.rank}{alternatives}]"


def _group_by_document(
    result: EvaluationResult, tokens: Sequence[TokenScore | TokenDifference]
) -> list[list[int]]:
    """For each document of ``result``, the indices into ``tokens`` of its tokens, in order."""
    groups: list[list[int]] = [[] for _ in result.documents]
    for index, token in enumerate(tokens):
        groups[token.document].append(index)
    return groups


_COLOURED_BY = {"e": "surprisal", "a": "surprisal", "b": "surprisal", "d": "change in surprisal"}


def _heatmap(name: str, key: str, first: int, spans: list[str], note: str = "") -> str:
    """One document's text; its spans are entries ``first``, ``first + 1``, ... of set ``key``."""
    if not spans:
        return f'<h3>{escape(name)}</h3><p class="note">No scored tokens.</p>'
    return (
        f"<h3>{escape(name)}</h3>{note}"
        f'<div class="heat" data-set="{key}" data-first="{first}" tabindex="0" '
        f'aria-label="{escape(name)}: tokens coloured by {_COLOURED_BY[key]}; arrow keys move '
        f'between tokens">{"".join(spans)}</div>'
    )


def _score_heatmaps(
    result: EvaluationResult, key: str, payload: _Payload
) -> tuple[str, dict[tuple[int, int], int]]:
    """Every document's heatmap, its tokens added to ``payload.sets[key]``.

    Returns:
        The HTML, and each token's index in the set by (document, position).
    """
    entries = payload.sets.setdefault(key, [])
    positions: dict[tuple[int, int], int] = {}
    sections = []
    for document, indices in zip(
        result.documents, _group_by_document(result, result.tokens), strict=True
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
            f'<span class="c{_surprisal_class(token.nats)}">{_escape_text(token.text)}</span>'
            for token in tokens
        ]
        sections.append(_heatmap(document.name, key, first, spans, note))
    return "\n".join(sections), positions


def _token_comparison(
    comparison: ComparisonResult,
    positions: dict[str, dict[tuple[int, int], int]],
    payload: _Payload,
) -> list[str]:
    """The KL summary, the largest differences and the difference heatmaps (shared tokenizer)."""
    parts = ["<h2>Token by token</h2>"]
    kl = comparison.kl
    if kl is not None:
        rows = [("tokens compared", "kl_tokens", str(kl.tokens))]
        rows.append(("mean KL(A\u2016B), nats", "kl_mean", f"{kl.mean:.4g}"))
        rows += [
            (f"{name}, nats", f"kl_{name}", f"{value:.4g}")
            for name, value in kl.percentiles.items()
        ]
        rows.append(("top-1 agreement", "top1_agreement", f"{kl.top1_agreement:.4f}"))
        body = "".join(
            f"<tr><th>{escape(label)}</th>{cell(value, metric=key)}</tr>"
            for label, key, value in rows
        )
        parts += [
            "<h3>KL divergence of B's next-token distribution from A's</h3>",
            f'<table class="kl"><tbody>{body}</tbody></table>',
        ]
    parts += ["<h3>Largest changes</h3>", _largest_table(comparison)]
    entries = payload.sets.setdefault("d", [])
    sections = []
    for document, indices in zip(
        comparison.a.documents,
        _group_by_document(comparison.a, comparison.differences),
        strict=True,
    ):
        first = len(entries)
        spans = []
        for index in indices:
            difference = comparison.differences[index]
            where = (difference.document, difference.position)
            index_a = positions.get("a", {}).get(where)
            index_b = positions.get("b", {}).get(where)
            entries.append(
                f"[{_number(difference.nats_a, '.4f')},{_number(difference.nats_b, '.4f')},"
                f"{_number(difference.kl, '.6f')},{'null' if index_a is None else index_a},"
                f"{'null' if index_b is None else index_b}]"
            )
            change = nats_to_bits(difference.nats_b - difference.nats_a)
            spans.append(
                f'<span class="d{bisect.bisect_right(DIFFERENCE_EDGES_BITS, change)}">'
                f"{_escape_text(difference.text)}</span>"
            )
        sections.append(_heatmap(document.name, "d", first, spans))
    parts += [
        "<h3>Texts, coloured by the change in surprisal</h3>",
        _difference_legend(),
        *sections,
    ]
    return parts


def _largest_table(comparison: ComparisonResult) -> str:
    """The tokens whose loss changed most, with both models' top-1 texts when known."""
    names = {
        token_id: text
        for result in (comparison.a, comparison.b)
        for token in result.tokens
        for token_id, text in zip(token.top_ids, token.top_texts, strict=True)
    }

    def top(token_id: int) -> str:
        text = names.get(token_id)
        return f"#{token_id}" if text is None else _visible(text)

    documents = comparison.a.documents
    rows = [
        "<tr>"
        + cell(documents[d.document].name)
        + cell(str(d.position))
        + f"<td><code>{escape(_visible(d.text))}</code></td>"
        + cell(f"{nats_to_bits(d.nats_a):.3f}")
        + cell(f"{nats_to_bits(d.nats_b):.3f}")
        + cell(f"{nats_to_bits(d.nats_b - d.nats_a):+.3f}")
        + cell(f"{d.kl:.4g}")
        + f"<td><code>{escape(top(d.top_a))}</code></td>"
        + f"<td><code>{escape(top(d.top_b))}</code></td>"
        + "</tr>"
        for d in comparison.largest
    ]
    headers = [
        "document", "position", "token", "bits A", "bits B", "B \u2212 A, bits", "KL, nats",
        "top-1 A", "top-1 B",
    ]  # fmt: skip
    head = "".join(f"<th>{header}</th>" for header in headers)
    return (
        f'<table class="largest"><thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table>"
    )


def _visible(text: str) -> str:
    """A token's text with whitespace made visible, as the tooltips show it."""
    if not text:
        return "\u2205"
    return (
        text.replace(" ", "\u2423")
        .replace("\n", "\u21b5")
        .replace("\t", "\u21e5")
        .replace("\r", "\u240d")
    )
