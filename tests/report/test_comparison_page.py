"""The comparison page: static checks on its markup, then the page as a real browser renders it.

The results are those of results.py; the browser is conftest.py's (see test_evaluation_page.py).
"""

from __future__ import annotations

import math
from pathlib import Path

from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver

from crossent.report.comparison_page import render_comparison_report
from report.browsing import hover, open_page, save_screenshot, severe_console_messages, text_of
from report.parsing import ParsedPage
from report.results import (
    NATS_A,
    NATS_B,
    document_texts,
    example_comparison,
    probability_text,
    visible,
)


def test_comparison_page_without_a_shared_tokenizer_has_no_token_comparison() -> None:
    page_text = render_comparison_report(example_comparison(shared_tokenizer=False))
    page = ParsedPage(page_text)
    assert sorted(page.heatmaps) == ["a", "b"]
    assert "tokenize the texts differently" in page_text
    assert not any(attributes.get("class") == "kl" for _, attributes in page.tags)


# The real browser.


def test_comparison_page_in_a_browser(browser: WebDriver, tmp_path: Path) -> None:
    comparison = example_comparison()
    open_page(browser, render_comparison_report(comparison), tmp_path / "comparison.html")

    text_bytes = sum(len(text.encode()) for text in document_texts())
    for model, nats in (("A", NATS_A), ("B", NATS_B)):
        cell = f".summary [data-metric=bits_per_byte][data-model={model}]"
        assert text_of(browser, cell) == f"{sum(nats) / math.log(2) / text_bytes:.4f}"
    assert text_of(browser, "table.kl [data-metric=top1_agreement]") == "0.2500"
    assert text_of(browser, "table.kl [data-metric=kl_mean]") == "0.01235"
    rows = browser.find_elements(By.CSS_SELECTOR, "table.largest tbody tr")
    changes = [b - a for a, b in zip(NATS_A, NATS_B, strict=True)]  # nats, as the page shows
    largest = sorted(changes, key=abs, reverse=True)[:3]
    assert [text_of(row, "td:nth-child(6)") for row in rows] == [f"{c:+.4f}" for c in largest]
    for key in "abd":
        spans = browser.find_elements(By.CSS_SELECTOR, f".heat[data-set={key}] > span")
        assert len(spans) == len(NATS_A)
    # B more confident by 5 nats or more: the darkest blue
    blue = browser.find_elements(By.CSS_SELECTOR, ".heat[data-set=d] > span.d0")
    assert len(blue) == sum(change < -5 for change in changes) == 2

    spans = browser.find_elements(By.CSS_SELECTOR, ".heat[data-set=d] > span")
    for index in (4, 6):  # " &amp;": B is 3.4 nats more confident; "é": 2 nats less
        difference = comparison.differences[index]
        tip = hover(browser, spans[index])
        assert text_of(tip, ".tip-text") == visible(difference.text)
        assert text_of(tip, ".tip-p-a") == probability_text(math.exp(-difference.nats_a))
        assert text_of(tip, ".tip-p-b") == probability_text(math.exp(-difference.nats_b))
        assert text_of(tip, ".tip-rank-a") == str(comparison.a.tokens[index].rank)
        assert text_of(tip, ".tip-rank-b") == str(comparison.b.tokens[index].rank)
        assert text_of(tip, ".tip-nats-a") == f"{difference.nats_a:.3f}"
        assert text_of(tip, ".tip-delta") == f"{changes[index]:+.3f} nats"
        assert text_of(tip, ".tip-kl") == f"{difference.kl:.4f} nats"

    assert severe_console_messages(browser) == []
    save_screenshot(browser, tmp_path / "comparison.png")
