"""The shell of every crossent HTML page: one self-contained file, locked by its own policy.

A page is one HTML file that a browser shows without any network request: its style, script and
figures (SVG) are inline, and a Content-Security-Policy meta tag lets the browser load nothing
else and run only that one script and style sheet (both allowed by their SHA-256 hashes).
:func:`page` builds that shell for the evaluation, comparison, training and explain pages alike;
:data:`BASE_STYLE` is the look they share and :func:`cell` the table cell their numbers sit in.

**Hostile text is inert.** Every text a page shows (a document's text and name, a model's name or
path, a setting) is HTML-escaped, so markup in it is shown, never parsed; the policy would block
any script or load that slipped through. Three more rules keep such text from breaking the layout:
a long word wraps at the edge of its block (``overflow-wrap``); a document name longer than
:data:`NAME_CHARS` characters is shown by its start and its length (:func:`short_name`), the whole
name in the element's ``title``; and a name shown inside a sentence is isolated in ``<bdi>``
(:func:`isolated`), as is a heatmap token holding an explicit bidi control (U+202A to U+202E,
U+2066 to U+2069; :func:`bidi_attribute`), so that a right-to-left override reorders nothing
around it.
"""

from __future__ import annotations

import base64
import hashlib
import re
from html import escape

# A document name longer than this is shown by its start and its length (short_name).
NAME_CHARS = 200
# Explicit bidi formatting characters: embeddings, overrides (U+202A-U+202E) and isolates.
_BIDI_CONTROLS = re.compile("[\u202a-\u202e\u2066-\u2069]")

# The look every crossent page shares: type, headings, number tables, the headline and notes.
BASE_STYLE = (
    ":root{font:15px/1.45 system-ui,sans-serif;color:#1c1c1e;background:#fff}"
    "body{max-width:76rem;margin:1.5rem auto;padding:0 1rem;overflow-wrap:break-word}"
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


def _sha256(source: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(source.encode()).digest()).decode() + "'"


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


def cell(text: str, *, metric: str = "", model: str = "") -> str:
    """A table cell showing ``text``, escaped; ``metric`` and ``model`` become data attributes."""
    attributes = f' data-metric="{metric}"' if metric else ""
    attributes += f' data-model="{model}"' if model else ""
    return f"<td{attributes}>{escape(text)}</td>"


def short_name(name: str) -> str:
    """``name`` as a heading or a table cell shows it: whole up to :data:`NAME_CHARS` characters,
    else its first ones, an ellipsis and its length.

    >>> short_name("x" * 250)[-30:]
    'xxxxxxxxxxxx… (250 characters)'
    """
    if len(name) <= NAME_CHARS:
        return name
    return f"{name[: NAME_CHARS - 40]}\u2026 ({len(name):,} characters)"


def name_title(name: str) -> str:
    """A ``title`` attribute holding ``name`` whole where :func:`short_name` cuts it, else ''."""
    return f' title="{escape(name)}"' if len(name) > NAME_CHARS else ""


def isolated(text: str) -> str:
    """``text``, escaped, in ``<bdi>``: whatever direction or override it holds, it cannot
    reorder the text around it."""
    return f"<bdi>{escape(text)}</bdi>"


def bidi_attribute(text: str) -> str:
    """``' dir="auto"'`` (which isolates an element) when ``text`` holds an explicit bidi
    control, else ''. Only then: isolating every token would break right-to-left text apart."""
    return ' dir="auto"' if _BIDI_CONTROLS.search(text) else ""
