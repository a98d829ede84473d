"""The pages and figures of ``crossent explain``: static checks of the markup, then the pages as
Chromium renders them (the ``browser`` fixture of conftest.py).

The text explanation is built by hand, with token texts holding markup, a line feed and the
dollar signs matplotlib would read as mathematics, so that every expected string is computed
here from the inputs."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np
import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver

from crossent.explain import (
    Check,
    DistributionExplanation,
    TemperatureRow,
    TemperatureScan,
    TextExplanation,
    TokenStep,
    explain_distributions,
    explain_stability,
    loss_curves_for,
)
from crossent.metrics import nats_to_bits, perplexity
from crossent.report.explain import figures, format_explanation, render_explanation_page
from report.browsing import open_page, save_screenshot, severe_console_messages
from report.parsing import ParsedPage

LABELS = ["dog <b>", "cat & co", "fish"]
TOKEN_TEXTS = ["<script>", " costs $5", "\n", " end"]
TOKEN_PROBS = [0.5, 1e-5, 0.03, 0.9]


def _text_explanation() -> TextExplanation:
    tokens = tuple(
        TokenStep(
            position=index,
            token_id=100 + index,
            text=text,
            probability=p,
            log_probability=math.log(p),
            rank=index + 1,
            top_ids=(7, 8, 9),
            top_texts=("<i>", " $", "&amp;"),
            top_probs=(0.6, 0.2, 0.1),
        )
        for index, (text, p) in enumerate(zip(TOKEN_TEXTS, TOKEN_PROBS, strict=True))
    )
    nats = -sum(math.log(p) for p in TOKEN_PROBS) / len(TOKEN_PROBS)
    return TextExplanation(
        model="tiny <model>",
        text="".join(TOKEN_TEXTS),
        prefix="bos",
        input_ids=(1, 100, 101, 102),
        input_texts=("<s>", *TOKEN_TEXTS[:-1]),
        logits_shape=(1, 4, 50),
        logits_dtype="float32",
        probability_sum_error=1e-15,
        tokens=tokens,
        mean_log_probability=-nats,
        nats=nats,
        bits=nats_to_bits(nats),
        perplexity=perplexity(nats),
        checks=(Check("torch.nn.functional.cross_entropy", nats + 1e-6, nats, 5e-5),),
    )


def _distribution() -> DistributionExplanation:
    return explain_distributions([0.2, 0.7, 0.1], labels=LABELS, p=[0.1, 0.8, 0.1])


@pytest.mark.parametrize(
    ("explanation", "svgs"),
    [(_distribution(), 3), (_text_explanation(), 3), (explain_stability(), 2)],
    ids=["distribution", "text", "stability"],
)
def test_pages_are_self_contained(
    explanation: DistributionExplanation | TextExplanation, svgs: int
) -> None:
    page = render_explanation_page(explanation, loss_curves_for(explanation))
    markup = ParsedPage(page)
    assert "script-src 'none'" in page
    assert markup.count("script") == 0
    assert markup.count("style") == 1  # the page's own, allowed by its hash
    assert markup.styled == []  # no style attribute: the policy would refuse it
    assert markup.count("svg") == svgs
    assert len(markup.ids) == len(set(markup.ids)), "ids repeat across the figures"
    assert set(markup.references) <= set(markup.ids)
    assert markup.references  # glyphs and clip paths are referenced
    assert "http://" not in page.replace('"http://www.w3.org/', "")


def test_texts_are_escaped() -> None:
    page = render_explanation_page(_text_explanation(), loss_curves_for(_text_explanation()))
    assert "<script>" not in page
    assert "<i>" not in page
    assert "&quot;&lt;script&gt;&quot;" in page  # shown as a JSON string
    distribution = render_explanation_page(_distribution(), loss_curves_for(_distribution()))
    assert "dog &lt;b&gt;" in distribution
    assert "cat &amp; co" in distribution


def test_terminal_text_of_a_text() -> None:
    text = format_explanation(_text_explanation())
    assert '"<script>" " costs $5" "\\n" " end"' in text  # the targets, as JSON strings
    nats = _text_explanation().nats
    assert f"step 6  neg_avg_log_probas = -avg_log_probas  {nats:.4f}" in text


def test_figures_by_mode() -> None:
    distribution, text = _distribution(), _text_explanation()
    assert list(figures(distribution, loss_curves_for(distribution))) == [
        "distributions", "loss_curve", "binary_curves",
    ]  # fmt: skip
    assert list(figures(text, loss_curves_for(text))) == [
        "per_position", "loss_curve", "binary_curves",
    ]  # fmt: skip


def _cells(driver: WebDriver, selector: str) -> list[str]:
    return [element.text for element in driver.find_elements(By.CSS_SELECTOR, selector)]


def _check_figures(driver: WebDriver, count: int) -> None:
    figures = driver.find_elements(By.CSS_SELECTOR, "figure svg")
    assert len(figures) == count
    for figure in figures:
        assert figure.size["width"] > 300
        assert figure.size["height"] > 150


def test_distribution_page_in_a_browser(browser: WebDriver, tmp_path: Path) -> None:
    explanation = _distribution()
    page = render_explanation_page(explanation, loss_curves_for(explanation))
    open_page(browser, page, tmp_path / "distribution.html")

    assert _cells(browser, "table.terms tbody tr td:first-child") == [*LABELS, "H(p, q)"]
    assert _cells(browser, "table.terms [data-metric=q]") == ["0.2", "0.7", "0.1"]
    assert _cells(browser, "table.terms [data-metric=p]") == ["0.1", "0.8", "0.1"]
    terms = [-p * math.log(q) for p, q in [(0.1, 0.2), (0.8, 0.7), (0.1, 0.1)]]
    assert _cells(browser, "table.terms [data-metric=term]") == [f"{t:.6f}" for t in terms]
    assert _cells(browser, "table.terms [data-metric=nats]") == [f"{sum(terms):.6f}"]
    entropy = -sum(p * math.log(p) for p in (0.1, 0.8, 0.1))
    assert _cells(browser, ".summary [data-metric=entropy_nats]") == [f"{entropy:.6f}"]
    assert _cells(browser, ".summary [data-metric=kl_nats]") == [f"{sum(terms) - entropy:.6f}"]
    assert _cells(browser, ".summary [data-metric=bits]") == [f"{sum(terms) / math.log(2):.6f}"]
    assert set(_cells(browser, "table.checks td:last-child")) == {"yes"}

    _check_figures(browser, 3)
    # the bars are drawn in their colours: presentation attributes, not refused inline style
    bars = browser.find_elements(By.CSS_SELECTOR, "figure.distributions svg path[fill='#2f6db5']")
    assert bars
    fill = browser.execute_script("return getComputedStyle(arguments[0]).fill", bars[0])
    assert fill == "rgb(47, 109, 181)"
    assert severe_console_messages(browser) == []
    save_screenshot(browser, tmp_path / "distribution.png")


def test_text_page_in_a_browser(browser: WebDriver, tmp_path: Path) -> None:
    explanation = _text_explanation()
    page = render_explanation_page(explanation, loss_curves_for(explanation))
    open_page(browser, page, tmp_path / "text.html")

    assert browser.find_element(By.TAG_NAME, "h1").text == "Cross-entropy of tiny <model> on a text"
    assert _cells(browser, "ol.steps [data-metric=nats]") == [f"{explanation.nats:.4f}"]
    assert _cells(browser, "ol.steps [data-metric=logits_shape]") == ["(1, 4, 50)"]
    rows = browser.find_elements(By.CSS_SELECTOR, "table.positions tbody tr")
    assert len(rows) == len(TOKEN_TEXTS)
    shown = [
        browser.execute_script(
            "return arguments[0].textContent", row.find_elements(By.TAG_NAME, "td")[1]
        )
        for row in rows
    ]
    assert shown == ['"<script>"', '" costs $5"', '"\\n"', '" end"']
    nats = [-math.log(p) for p in TOKEN_PROBS]
    assert _cells(browser, "table.positions [data-metric=nats]") == [f"{n:.4f}" for n in nats]
    assert _cells(browser, "table.positions [data-metric=rank]") == ["1", "2", "3", "4"]
    assert _cells(browser, "table.tokens [data-metric=probability]") == [
        f"{p:.4g}" for p in TOKEN_PROBS
    ]
    _check_figures(browser, 3)
    assert severe_console_messages(browser) == []
    save_screenshot(browser, tmp_path / "text.png")


def test_stability_page_in_a_browser(browser: WebDriver, tmp_path: Path) -> None:
    explanation = explain_stability()
    page = render_explanation_page(explanation, loss_curves_for(explanation))
    open_page(browser, page, tmp_path / "stability.html")

    names = _cells(browser, "table.stability tbody td:first-child")
    assert names == [row.case.name for row in explanation.rows]
    wrong = names.index("confident and wrong")
    assert _cells(browser, "table.stability [data-metric=naive_nats]")[wrong] == "23.0259"
    assert _cells(browser, "table.stability [data-metric=exact_nats]")[wrong] == "2000.0000"
    assert _cells(browser, "table.stability [data-metric=naive_without_epsilon_nats]")[wrong] == (
        "inf"
    )
    assert _cells(browser, "table.stability [data-metric=naive_gradient]")[wrong] == "0"
    assert _cells(browser, "table.stability [data-metric=exact_gradient]")[wrong] == "-1"
    _check_figures(browser, 2)
    assert severe_console_messages(browser) == []


def test_the_temperature_tables_of_a_distribution() -> None:
    """The page and the terminal show q_T label by label, as numpy computes it, and the checks."""
    e = explain_distributions([0.2, 0.7, 0.1], labels=LABELS, target="cat & co", temperatures=[2])
    assert e.temperatures is not None
    page = render_explanation_page(e, loss_curves_for(e))
    markup = ParsedPage(page)
    rows = markup.rows["temperature"]
    assert rows[0][:4] == ["T", "q(dog <b>)", "q(cat & co) target", "q(fish)"]
    assert "q(dog &lt;b&gt;)" in page
    terminal = [line.split() for line in format_explanation(e).splitlines()]
    for texts, temperature in zip(rows[1:], [1.0, 2.0], strict=True):
        q = np.array([0.2, 0.7, 0.1]) ** (1 / temperature)
        q /= q.sum()
        expected = [f"{temperature:g}", *(f"{value:.6g}" for value in q)]
        assert texts[:4] == expected
        assert texts[4] == f"{-math.log(q[1]):.6f}"
        assert texts in terminal
    # the explanation's checks and then the scan's, each table under its header row
    assert len(markup.rows["checks"]) == len(e.checks) + len(e.temperatures.checks) + 2


def test_the_temperature_table_of_a_text() -> None:
    scan = TemperatureScan(
        rows=(
            TemperatureRow(1.0, None, 0.25, 2.0, 2.0 / math.log(2), math.exp(2.0), 1.5),
            TemperatureRow(2.5, None, 0.125, 1.75, 1.75 / math.log(2), math.exp(1.75), 3.0),
        ),
        checks=(Check("T = 2.5: torch.nn.functional.cross_entropy", 1.75, 1.75, 5e-5),),
    )
    e = dataclasses.replace(_text_explanation(), temperatures=scan)
    rows = ParsedPage(render_explanation_page(e, loss_curves_for(e))).rows["temperature"]
    assert rows[0] == ["T", "mean loss, nats", "bits/token", "perplexity", "mean entropy, nats",
                       "loss - entropy", "mean p(target)"]  # fmt: skip
    assert rows[2] == ["2.5", "1.7500", f"{1.75 / math.log(2):.4f}", f"{math.exp(1.75):.6g}",
                       "3.0000", "-1.2500", "0.125"]  # fmt: skip
    text = format_explanation(e)
    assert "Temperature checks:" in text
    assert ["2.5", "1.7500", f"{1.75 / math.log(2):.4f}", f"{math.exp(1.75):.6g}", "3.0000",
            "-1.2500", "0.125"] in [line.split() for line in text.splitlines()]  # fmt: skip
