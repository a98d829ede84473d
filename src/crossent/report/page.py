"""The shell of every crossent HTML page: one self-contained file, locked by its own policy.

A page is one HTML file that a browser shows without any network request: its style, script and
figures (SVG) are inline, and a Content-Security-Policy meta tag lets the browser load nothing
else and run only that one script and style sheet (both allowed by their SHA-256 hashes).
:func:`page` builds that shell for the evaluation, comparison, training and explain pages alike;
:data:`BASE_STYLE` is the look they share and :func:`cell` the table cell their numbers sit in.
"""

from __future__ import annotations

import base64
import hashlib
from html import escape

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
