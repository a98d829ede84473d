"""matplotlib figures as crossent writes them: PNG files, and SVG that a page holds inline.

Figures are drawn by Agg through :func:`new_figure`, never through pyplot, so no global state or
display is involved and importing this module is the only cost (it is imported lazily by the
commands that plot).

Inline SVG must live under the Content-Security-Policy of :func:`crossent.report.page.page`,
which allows no inline style: :func:`inline_svg` turns matplotlib's ``style`` attributes and its
one default style sheet into SVG presentation attributes, and draws text as paths so it looks the
same without any font installed. Several figures can share a page: each gets its own id prefix,
so their glyph, clip and marker ids never collide.
"""

from __future__ import annotations

import io
import re

import matplotlib
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

PNG_DPI = 150
# matplotlib derives its clip and marker ids from this salt: fixed, so the same figure always
# gives the same SVG.
SVG_HASH_SALT = "crossent"

_DEFAULT_RULE = re.compile(r'<style type="text/css">\*\{([^}]*)\}</style>')
_STYLE_ATTRIBUTE = re.compile(r' style="([^"]*)"')
_ID = re.compile(r' id="([^"]+)"')
_REFERENCE = re.compile(r'(xlink:href="#|href="#|url\(#)([^")]+)')


def new_figure(width: float, height: float) -> Figure:
    """An empty figure of ``width`` x ``height`` inches, constrained layout, drawn by Agg."""
    figure = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def render(figure: Figure, file_format: str) -> bytes:
    """The figure as ``"png"`` (at :data:`PNG_DPI`) or ``"svg"`` bytes, without a date in them."""
    buffer = io.BytesIO()
    # No <metadata> in the SVG: its date would make each page differ, and its RDF names URLs.
    metadata = dict.fromkeys(("Date", "Creator", "Format", "Type")) if file_format == "svg" else {}
    with matplotlib.rc_context({"svg.hashsalt": SVG_HASH_SALT}):
        figure.savefig(buffer, format=file_format, dpi=PNG_DPI, metadata=metadata)
    return buffer.getvalue()


def png_bytes(figure: Figure) -> bytes:
    """The figure as a PNG file's bytes; write them with ``write_bytes_atomically``."""
    return render(figure, "png")


def inline_svg(figure: Figure, label: str, *, id_prefix: str | None = None) -> str:
    """The figure as an ``<svg>`` element to put inside an HTML page (see the module docstring).

    Args:
        figure: the figure.
        label: what the figure shows, for screen readers (``aria-label``); escaped by the caller
            if it could hold a quote.
        id_prefix: prepended (with ``-``) to every id in the SVG and to every reference to one,
            so that several figures can share a page; None keeps matplotlib's ids.

    Returns:
        The element, with no style sheet and no ``style`` attribute.
    """
    svg = render(figure, "svg").decode("utf-8")
    svg = svg[svg.index("<svg") :]  # without the XML declaration and DOCTYPE
    # matplotlib's one style sheet holds its defaults for every element, "*{...}"; the root's
    # presentation attributes give the same defaults by inheritance.
    defaults = ""
    default_rule = _DEFAULT_RULE.search(svg)
    if default_rule is not None:
        defaults = _attributes(default_rule[1])
        svg = svg[: default_rule.start()] + svg[default_rule.end() :]
    svg = _STYLE_ATTRIBUTE.sub(lambda match: _attributes(match[1]), svg)
    if id_prefix is not None:
        svg = _ID.sub(lambda match: f' id="{id_prefix}-{match[1]}"', svg)
        svg = _REFERENCE.sub(lambda match: f"{match[1]}{id_prefix}-{match[2]}", svg)
    return svg.replace("<svg", f'<svg{defaults} role="img" aria-label="{label}"', 1)


def _attributes(declarations: str) -> str:
    """CSS declarations ``"fill: #fff; stroke-width: 1.5"`` as SVG presentation attributes.

    matplotlib escapes quotes in attribute values, so no value holds a raw ``"``.
    """
    pairs = (item.split(":", 1) for item in declarations.split(";") if item.strip())
    return "".join(f' {name.strip()}="{value.strip()}"' for name, value in pairs)
