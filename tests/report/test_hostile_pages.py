"""Every kind of report page, made by real runs from hostile input, is inert in a real browser.

Issue 15: a document's text and name (through ``--name-field``), a model's path (a folder named
with markup and a right-to-left override) and a training run's paths hold ``</script>``, an
``<img onerror>``, a ``javascript:`` link, an SVG ``onload``, a style sheet, control characters,
U+202E and a line of 100,000 characters. ``crossent eval``, ``compare`` (a shared tokenizer,
different tokenizers, three models), ``explain`` and ``train`` make their pages from it; each
page is opened in Chromium with a listener for ``securitypolicyviolation`` registered before
the page's own code (CDP ``Page.addScriptToEvaluateOnNewDocument``). Had any markup of the input
been parsed, its script would set ``window.__pwned`` or the policy would report the blocked
script, handler or load; the test asserts neither happened, that the markup is shown as text,
that no page needs a horizontal scroll bar, and that the override reorders no neighbouring token.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from selenium.webdriver.remote.webdriver import WebDriver

from crossent.cli import main
from report.browsing import severe_console_messages
from tiny_lm import SAMPLE, bpe, save_llama

pytestmark = pytest.mark.slow  # six real runs make the pages

RLO = "\u202e"
MARKUP = (
    "</script><script>window.__pwned='script'</script>"
    "<img src=x onerror=\"window.__pwned='img'\">"
    "<a href=\"javascript:window.__pwned='link'\">link</a>"
    "<svg onload=\"window.__pwned='svg'\"></svg>"
    "<style>body{display:none}</style>"
)
CONTROLS = "\x01\x07\x1b[31m\x7f\u0085\u200f"
PAYLOAD = f"{MARKUP} {CONTROLS} {RLO}overridden, then more words after it"
LONG = "L" * 100_000
TEXT = f"A plain start. {PAYLOAD}\n{LONG}\nThe end, on its own line.\n"
NAME = f"{MARKUP}{RLO}{LONG}"
EXPLAINED = f"</script><img src=x onerror=\"window.__pwned='img'\"> {RLO}over"  # 256 tokens at most
# Registered before any of the page's code: what the page's policy reports, as it happens.
LISTENER = (
    "window.__violations = [];"
    "document.addEventListener('securitypolicyviolation', (event) => window.__violations.push("
    "event.violatedDirective + ' ' + event.blockedURI));"
)


@pytest.fixture(scope="module")
def pages(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Each kind of page, made by a real run of its command from the hostile input."""
    root = tmp_path_factory.mktemp("hostile")
    crafted = root / "<" / f"script><img src=x onerror=window.__pwned='path'>{RLO}dir"
    crafted.mkdir(parents=True)
    tokenizer = bpe([SAMPLE] * 20 + ["L" * 4096] * 4)
    model_a = save_llama(crafted / "a", tokenizer, seed=0, context=512)
    model_b = save_llama(crafted / "b", tokenizer, seed=1, context=512)
    other = bpe(["other words entirely " * 40] + ["L" * 4096] * 4, 300)
    model_c = save_llama(crafted / "c", other, seed=2, context=512)
    data = crafted / "data.jsonl"
    lines = [{"title": NAME, "text": TEXT}, {"title": "a plain neighbour", "text": "Hi there."}]
    data.write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")
    reading = ["--data", str(data), "--field", "text", "--name-field", "title", "--no-progress"]
    out = root / "pages"
    runs = {
        "eval": ["eval", "--model", str(model_a), *reading],
        "compare": ["compare", "--model", str(model_a), "--model", str(model_b), *reading],
        "compare-tokenizers": ["compare", "--model", str(model_a), "--model", str(model_c),
                               *reading],
        "compare-three": ["compare", "--model", str(model_a), "--model", str(model_b),
                          "--model", str(model_c), *reading],
    }  # fmt: skip
    made = {}
    for kind, arguments in runs.items():
        made[kind] = out / f"{kind}.html"
        assert main([*arguments, "--report", str(made[kind])]) == 0, kind
    made["explain"] = out / "explain.html"
    explain = ["explain", "--model", str(model_a), EXPLAINED, "--html", str(made["explain"])]
    assert main(explain) == 0
    text = crafted / "train.txt"
    text.write_text(SAMPLE * 40 + TEXT, encoding="utf-8")
    run = crafted / "run"
    assert main([
        "train", "--data", str(text), "--preset", "tiny", "--context-length", "32",
        "--vocab-size", "300", "--batch-size", "8", "--max-steps", "2", "--eval-every", "1",
        "--warmup-steps", "1", "--patience", "0", "--device", "cpu", "--no-progress",
        "--out", str(run),
    ]) == 0  # fmt: skip
    made["train"] = run / "report.html"
    return made


@pytest.fixture
def guarded(browser: WebDriver) -> Iterator[WebDriver]:
    """The browser, with :data:`LISTENER` run first in every page it opens."""
    added = browser.execute(
        "executeCdpCommand",
        {"cmd": "Page.addScriptToEvaluateOnNewDocument", "params": {"source": LISTENER}},
    )["value"]
    yield browser
    browser.execute(
        "executeCdpCommand",
        {"cmd": "Page.removeScriptToEvaluateOnNewDocument", "params": added},
    )


KINDS = ["eval", "compare", "compare-tokenizers", "compare-three", "explain", "train"]


@pytest.mark.parametrize("kind", KINDS)
def test_hostile_input_is_inert_in_every_page(
    guarded: WebDriver, pages: dict[str, Path], kind: str
) -> None:
    severe_console_messages(guarded)  # reading the log empties it
    guarded.get(pages[kind].as_uri())
    assert guarded.execute_script("return window.__pwned") is None
    assert guarded.execute_script("return window.__violations") == []
    assert severe_console_messages(guarded) == []
    counts = guarded.execute_script(
        "return ['img', 'a[href]', 'iframe', 'object', 'embed', 'style', "
        "'[onerror]', '[onload]', 'script:not([type])'].map("
        "(selector) => document.querySelectorAll(selector).length)"
    )
    scripts = 0 if kind in {"explain", "train"} else 1  # the heatmaps' own script, by its hash
    assert counts == [0, 0, 0, 0, 0, 1, 0, 0, scripts]
    shown = guarded.execute_script("return document.body.textContent")
    assert "<img src=x onerror=" in shown  # the markup is there, as text
    # nothing is wider than the window: long names are cut, long lines wrap
    width = guarded.execute_script(
        "return [document.documentElement.scrollWidth, document.documentElement.clientWidth]"
    )
    assert width[0] <= width[1]
    # a document's name, however long, takes a column of at most NAME_CHARS characters' width
    names = guarded.execute_script(
        "return [...document.querySelectorAll('table.documents td:first-child')]"
        ".map((cell) => cell.getBoundingClientRect().width)"
    )
    assert all(width < 600 for width in names)


@pytest.mark.parametrize("kind", ["eval", "compare"])
def test_a_right_to_left_override_reorders_no_neighbouring_token(
    guarded: WebDriver, pages: dict[str, Path], kind: str
) -> None:
    guarded.get(pages[kind].as_uri())
    # the tokens after the override's, left to right on their line as in the text
    lefts = guarded.execute_script(
        "const spans = [...document.querySelector('.heat').children];"
        f"const at = spans.findIndex((span) => span.textContent.includes('{RLO}'));"
        "const top = spans[at + 1].getBoundingClientRect().top;"
        "return spans.slice(at + 1, at + 8)"
        ".filter((span) => span.getBoundingClientRect().top === top)"
        ".map((span) => span.getBoundingClientRect().left);"
    )
    assert len(lefts) >= 3
    assert lefts == sorted(lefts)
