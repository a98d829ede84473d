"""The evaluation page: static checks on its markup, then the page as a real browser renders it.

The results are those of results.py. The browser tests drive Debian's Chromium through Selenium
(the ``browser`` fixture is in conftest.py, its helpers in browsing.py); ``make test`` installs it
when missing, and the tests skip, saying why, when it is not there.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.remote.webdriver import WebDriver

from crossent.evaluation import DocumentScore, EvaluationResult, TokenScore
from crossent.metrics import NLLMeter
from crossent.report.evaluation_page import render_evaluation_report
from report.browsing import hover, open_page, save_screenshot, severe_console_messages, text_of
from report.parsing import ParsedPage
from report.results import (
    ALTERNATIVES,
    DOCUMENTS,
    HOVERED,
    NATS_A,
    document_texts,
    example_evaluation,
    probability_text,
    visible,
)


def test_evaluation_page_loads_nothing_and_sets_a_policy() -> None:
    page = ParsedPage(render_evaluation_report(example_evaluation("m", NATS_A)))
    for tag, attributes in page.tags:
        for name in ("src", "href", "action", "xlink:href", "srcset"):
            assert name not in attributes, f"<{tag} {name}=...> could load something"
        assert tag not in {"link", "img", "iframe", "object", "embed", "base"}
    scripts = [attributes for tag, attributes in page.tags if tag == "script"]
    assert [script.get("type") for script in scripts] == ["application/json", None]
    policies = page.policies()
    assert len(policies) == 1
    assert policies[0] is not None
    assert "default-src 'none'" in policies[0]
    assert "unsafe-inline" not in policies[0]


def test_evaluation_page_escapes_every_text() -> None:
    page = ParsedPage(
        render_evaluation_report(example_evaluation("<i>m</i>", NATS_A), title="a <s> & c")
    )
    assert page.heatmaps["e"] == document_texts()
    # the texts inside the JSON block cannot end it, and arrive intact
    data = json.loads(page.data_block)
    assert set(ALTERNATIVES) <= set(data["texts"])
    assert len(data["sets"]["e"]) == len(NATS_A)
    assert not any(tag in {"i", "s", "u"} for tag, _ in page.tags)


def test_evaluation_page_without_tokens_says_why() -> None:
    page_text = render_evaluation_report(example_evaluation("m", NATS_A, with_tokens=False))
    page = ParsedPage(page_text)
    assert page.heatmaps == {}
    assert not any(tag in {"svg", "script"} for tag, _ in page.tags)
    assert "did not record per-token details" in page_text


def test_page_stays_small_per_token() -> None:
    # 20k tokens with varied alternatives: well under 200 bytes a token beyond the text (about 80)
    pieces = [f" w{index % 5000}" for index in range(20_000)]
    tokens = [
        TokenScore(0, index + 1, index, text, 0, 0.5 + (index % 97) / 7.0, 1 + index % 300,
                   tuple(range(5)), tuple(pieces[(index + k) % 5000] for k in range(5)),
                   (0.31, 0.12, 0.051, 0.0123, 0.00456))
        for index, text in enumerate(pieces)
    ]  # fmt: skip
    text = "".join(pieces)
    meter = NLLMeter(sum(token.nats for token in tokens), len(tokens), len(text), len(tokens), 0)
    document = DocumentScore("long", meter.tokens, meter.bytes, meter.words, meter.nll_nats, 0)
    result = EvaluationResult("m", 2048, 2048, "bos", [document], meter.result(), tokens)
    page = render_evaluation_report(result).encode()
    assert (len(page) - len(text.encode())) / len(tokens) < 120


# The real browser.


def test_evaluation_page_in_a_browser(browser: WebDriver, tmp_path: Path) -> None:
    result = example_evaluation("model <A>", NATS_A)
    open_page(browser, render_evaluation_report(result), tmp_path / "report.html")

    boxes = browser.find_elements(By.CSS_SELECTOR, ".heat")
    spans = browser.find_elements(By.CSS_SELECTOR, ".heat > span")
    assert len(spans) == len(NATS_A)
    # what the browser holds, CR and no-break space included, is each document's text
    texts = [browser.execute_script("return arguments[0].textContent", box) for box in boxes]
    assert texts == document_texts()

    token = result.tokens[HOVERED]
    tip = hover(browser, spans[HOVERED])
    assert text_of(tip, ".tip-text") == visible(token.text)
    assert text_of(tip, ".tip-p") == probability_text(math.exp(-token.nats))
    assert text_of(tip, ".tip-bits") == f"{token.nats / math.log(2):.3f} bits"
    assert text_of(tip, ".tip-rank") == str(token.rank)
    shown = [
        (text_of(row, "code"), text_of(row, ".tip-alt-p"))
        for row in tip.find_elements(By.CSS_SELECTOR, ".tip-alt")
    ]
    expected = [
        (visible(t), probability_text(p))
        for t, p in zip(token.top_texts, token.top_probs, strict=True)
    ]
    assert shown == expected[:5]

    # leaving the text hides the tooltip; the keyboard reaches the emoji's empty second token
    _hover_away = ActionChains(browser).move_to_element(browser.find_element(By.TAG_NAME, "h1"))
    _hover_away.perform()
    assert not browser.find_element(By.ID, "tip").is_displayed()
    browser.execute_script("arguments[0].focus()", boxes[0])
    ActionChains(browser).send_keys(*[Keys.ARROW_RIGHT] * 12).perform()
    assert text_of(browser, "#tip .tip-text") == "\u2205"
    assert text_of(browser, "#tip .tip-p") == probability_text(math.exp(-result.tokens[11].nats))
    ActionChains(browser).send_keys(Keys.ESCAPE).perform()
    assert not browser.find_element(By.ID, "tip").is_displayed()

    bars = browser.find_elements(By.CSS_SELECTOR, "svg.histogram rect")
    counts = [int(bar.get_attribute("data-count") or -1) for bar in bars]
    assert sum(counts) == len(NATS_A)
    bits = [nats / math.log(2) for nats in NATS_A]
    assert len(bars) == min(math.floor(max(bits) / 0.5) + 1, 64)
    assert counts[34] == sum(17.0 <= b < 17.5 for b in bits) == 1
    assert bars[34].get_attribute("data-from") == "17"
    # the last bin also holds everything above its lower edge, 31.5 bits
    assert counts[-1] == sum(b >= 31.5 for b in bits) == 1
    assert bars[-1].get_attribute("data-to") == "inf"

    bits_per_byte = sum(bits) / sum(len(text.encode()) for text in document_texts())
    assert text_of(browser, ".summary [data-metric=bits_per_byte]") == f"{bits_per_byte:.4f}"
    rows = browser.find_elements(By.CSS_SELECTOR, "table.documents tbody tr")
    assert [text_of(row, "td") for row in rows] == list(DOCUMENTS)

    assert severe_console_messages(browser) == []
    save_screenshot(browser, tmp_path / "report.png")
