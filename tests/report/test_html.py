"""The HTML reports: static checks on the markup, then the pages as a real browser renders them.

Results are built by hand from texts with markup, entities, CR/LF, tabs, non-ASCII and an emoji
split across two tokens, so every expected string is computed here from the inputs, not read back
from the page. The browser tests drive Debian's Chromium through Selenium; ``make test`` installs
it when missing, and the tests skip, saying why, when it is not there.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.remote.webelement import WebElement

from crossent.comparison import ComparisonResult, KLSummary, TokenDifference
from crossent.evaluation import DocumentScore, EvaluationResult, TokenScore, count_words
from crossent.metrics import NLLMeter
from crossent.report.html import render_comparison_report, render_evaluation_report
from report.browsing import open_page, save_screenshot, severe_console_messages
from report.parsing import ParsedPage

# Each document as its tokens' texts; the emoji's second byte-token has no text of its own.
DOCUMENTS = {
    "intro <u>": ["Hi", " <script>", 'alert("x")', "</script>", " &amp;", " caf", "é", "\n",
                  "\t", "end", " 😀", "", "!"],
    "crlf": ["Line", " one", "\r\n", "line", "\u00a0two", " 日本"],
}  # fmt: skip
NATS_A = [0.1, 2.5, 7.3, 0.02, 4.4, 1.1, 0.7, 0.3, 3.3, 12.0, 5.5, 0.01, 9.9,
          0.2, 1.7, 0.05, 2.2, 6.1, 30.5]  # fmt: skip
NATS_B = [0.3, 2.0, 7.3, 0.5, 1.0, 1.1, 2.7, 0.3, 0.1, 14.0, 5.0, 0.01, 3.0,
          0.2, 1.0, 0.05, 4.2, 6.1, 20.0]  # fmt: skip
ALTERNATIVES = ["</script>", "&", " ", "\n", "", "é", "<!--", "\t", "x"]
HOVERED = 2  # 'alert("x")' in the first document: p below 0.001, so in exponent form


def _tokens(nats: list[float], rank_shift: int) -> list[TokenScore]:
    scores = []
    for document, pieces in enumerate(DOCUMENTS.values()):
        start = 0
        for position, text in enumerate(pieces, start=1):
            index = len(scores)
            texts = tuple(ALTERNATIVES[(index + k) % len(ALTERNATIVES)] for k in range(6))
            probs = (0.41, 0.2, 0.0333, 0.0005, 0.00012345, 1e-9)
            scores.append(
                TokenScore(
                    document=document,
                    position=position,
                    token_id=100 + index,
                    text=text,
                    start=start,
                    nats=nats[index],
                    rank=1 + (index + rank_shift) % 9,
                    top_ids=tuple(1000 + (index + k) % len(ALTERNATIVES) for k in range(6)),
                    top_texts=texts,
                    top_probs=probs,
                )
            )
            start += len(text)
    return scores


def _evaluation(
    model: str, nats: list[float], *, rank_shift: int = 0, with_tokens: bool = True
) -> EvaluationResult:
    tokens = _tokens(nats, rank_shift)
    documents = []
    total = NLLMeter()
    for index, (name, pieces) in enumerate(DOCUMENTS.items()):
        text = "".join(pieces)
        own = [token for token in tokens if token.document == index]
        meter = NLLMeter(
            nll_nats=sum(token.nats for token in own),
            tokens=len(own),
            bytes=len(text.encode()),
            words=count_words(text),
            correct=sum(token.rank == 1 for token in own),
        )
        documents.append(
            DocumentScore(
                name, meter.tokens, meter.bytes, meter.words, meter.nll_nats, meter.correct
            )
        )
        total.merge(meter)
    return EvaluationResult(
        model, 64, 32, "bos", documents, total.result(), tokens if with_tokens else []
    )


def _comparison(*, shared_tokenizer: bool = True) -> ComparisonResult:
    a = _evaluation("model <A>", NATS_A)
    b = _evaluation("model B", NATS_B, rank_shift=4)
    differences = [
        TokenDifference(
            token_a.document,
            token_a.position,
            token_a.token_id,
            token_a.text,
            token_a.nats,
            token_b.nats,
            kl=0.001 * (index + 1),
            top_a=token_a.top_ids[0],
            top_b=token_b.top_ids[1],
        )
        for index, (token_a, token_b) in enumerate(zip(a.tokens, b.tokens, strict=True))
    ]
    largest = sorted(differences, key=lambda d: abs(d.nats_b - d.nats_a), reverse=True)[:3]
    kl = KLSummary(
        tokens=len(differences),
        mean=0.0123456,
        percentiles={
            "p50": 0.01,
            "p90": 0.017,
            "p95": 0.018,
            "p99": 0.019,
            "p99.9": 0.019,
            "max": 0.019,
        },
        top1_agreement=0.25,
    )
    if not shared_tokenizer:
        return ComparisonResult(a, b, False, None)
    return ComparisonResult(a, b, True, kl, largest, differences)


def _probability(p: float) -> str:
    """The documented format: three significant digits, in exponent form below 0.001."""
    if p >= 0.001:
        return f"{p:#.3g}"
    mantissa, exponent = f"{p:.2e}".split("e")
    return f"{mantissa}e{int(exponent)}"


def _visible(text: str) -> str:
    shown = {" ": "\u2423", "\n": "\u21b5", "\t": "\u21e5", "\r": "\u240d"}
    return "".join(shown.get(char, char) for char in text) if text else "\u2205"


def _document_texts() -> list[str]:
    return ["".join(pieces) for pieces in DOCUMENTS.values()]


def test_evaluation_page_loads_nothing_and_sets_a_policy() -> None:
    page = ParsedPage(render_evaluation_report(_evaluation("m", NATS_A)))
    for tag, attributes in page.tags:
        for name in ("src", "href", "action", "xlink:href", "srcset"):
            assert name not in attributes, f"<{tag} {name}=...> could load something"
        assert tag not in {"link", "img", "iframe", "object", "embed", "base"}
    scripts = [attributes for tag, attributes in page.tags if tag == "script"]
    assert [script.get("type") for script in scripts] == ["application/json", None]
    policies = [
        attributes["content"]
        for tag, attributes in page.tags
        if tag == "meta" and attributes.get("http-equiv") == "Content-Security-Policy"
    ]
    assert len(policies) == 1
    assert policies[0] is not None
    assert "default-src 'none'" in policies[0]
    assert "unsafe-inline" not in policies[0]


def test_evaluation_page_escapes_every_text() -> None:
    page = ParsedPage(render_evaluation_report(_evaluation("<i>m</i>", NATS_A), title="a <s> & c"))
    assert page.heatmaps["e"] == _document_texts()
    # the texts inside the JSON block cannot end it, and arrive intact
    data = json.loads(page.data_block)
    assert set(ALTERNATIVES) <= set(data["texts"])
    assert len(data["sets"]["e"]) == len(NATS_A)
    assert not any(tag in {"i", "s", "u"} for tag, _ in page.tags)


def test_evaluation_page_without_tokens_says_why() -> None:
    page_text = render_evaluation_report(_evaluation("m", NATS_A, with_tokens=False))
    page = ParsedPage(page_text)
    assert page.heatmaps == {}
    assert not any(tag in {"svg", "script"} for tag, _ in page.tags)
    assert "did not record per-token details" in page_text


def test_comparison_page_without_a_shared_tokenizer_has_no_token_comparison() -> None:
    page_text = render_comparison_report(_comparison(shared_tokenizer=False))
    page = ParsedPage(page_text)
    assert sorted(page.heatmaps) == ["a", "b"]
    assert "tokenize the texts differently" in page_text
    assert not any(attributes.get("class") == "kl" for _, attributes in page.tags)


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


# The real browser (the `browser` fixture is in conftest.py, its helpers in browsing.py).


def _hover(driver: WebDriver, element: WebElement) -> WebElement:
    ActionChains(driver).move_to_element(element).perform()
    tip = driver.find_element(By.ID, "tip")
    assert tip.is_displayed()
    return tip


def _text(root: WebDriver | WebElement, selector: str) -> str:
    return root.find_element(By.CSS_SELECTOR, selector).text


def test_evaluation_page_in_a_browser(browser: WebDriver, tmp_path: Path) -> None:
    result = _evaluation("model <A>", NATS_A)
    open_page(browser, render_evaluation_report(result), tmp_path / "report.html")

    boxes = browser.find_elements(By.CSS_SELECTOR, ".heat")
    spans = browser.find_elements(By.CSS_SELECTOR, ".heat > span")
    assert len(spans) == len(NATS_A)
    # what the browser holds, CR and no-break space included, is each document's text
    texts = [browser.execute_script("return arguments[0].textContent", box) for box in boxes]
    assert texts == _document_texts()

    token = result.tokens[HOVERED]
    tip = _hover(browser, spans[HOVERED])
    assert _text(tip, ".tip-text") == _visible(token.text)
    assert _text(tip, ".tip-p") == _probability(math.exp(-token.nats))
    assert _text(tip, ".tip-bits") == f"{token.nats / math.log(2):.3f} bits"
    assert _text(tip, ".tip-rank") == str(token.rank)
    shown = [
        (_text(row, "code"), _text(row, ".tip-alt-p"))
        for row in tip.find_elements(By.CSS_SELECTOR, ".tip-alt")
    ]
    expected = [
        (_visible(t), _probability(p))
        for t, p in zip(token.top_texts, token.top_probs, strict=True)
    ]
    assert shown == expected[:5]

    # leaving the text hides the tooltip; the keyboard reaches the emoji's empty second token
    _hover_away = ActionChains(browser).move_to_element(browser.find_element(By.TAG_NAME, "h1"))
    _hover_away.perform()
    assert not browser.find_element(By.ID, "tip").is_displayed()
    browser.execute_script("arguments[0].focus()", boxes[0])
    ActionChains(browser).send_keys(*[Keys.ARROW_RIGHT] * 12).perform()
    assert _text(browser, "#tip .tip-text") == "\u2205"
    assert _text(browser, "#tip .tip-p") == _probability(math.exp(-result.tokens[11].nats))
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

    bits_per_byte = sum(bits) / sum(len(text.encode()) for text in _document_texts())
    assert _text(browser, ".summary [data-metric=bits_per_byte]") == f"{bits_per_byte:.4f}"
    rows = browser.find_elements(By.CSS_SELECTOR, "table.documents tbody tr")
    assert [_text(row, "td") for row in rows] == list(DOCUMENTS)

    assert severe_console_messages(browser) == []
    save_screenshot(browser, tmp_path / "report.png")


def test_comparison_page_in_a_browser(browser: WebDriver, tmp_path: Path) -> None:
    comparison = _comparison()
    open_page(browser, render_comparison_report(comparison), tmp_path / "comparison.html")

    text_bytes = sum(len(text.encode()) for text in _document_texts())
    for model, nats in (("A", NATS_A), ("B", NATS_B)):
        cell = f".summary [data-metric=bits_per_byte][data-model={model}]"
        assert _text(browser, cell) == f"{sum(nats) / math.log(2) / text_bytes:.4f}"
    assert _text(browser, "table.kl [data-metric=top1_agreement]") == "0.2500"
    assert _text(browser, "table.kl [data-metric=kl_mean]") == "0.01235"
    rows = browser.find_elements(By.CSS_SELECTOR, "table.largest tbody tr")
    changes = [(b - a) / math.log(2) for a, b in zip(NATS_A, NATS_B, strict=True)]
    largest = sorted(changes, key=abs, reverse=True)[:3]
    assert [_text(row, "td:nth-child(6)") for row in rows] == [f"{c:+.3f}" for c in largest]
    for key in "abd":
        spans = browser.find_elements(By.CSS_SELECTOR, f".heat[data-set={key}] > span")
        assert len(spans) == len(NATS_A)
    # B more confident by 8 bits or more: the darkest blue
    blue = browser.find_elements(By.CSS_SELECTOR, ".heat[data-set=d] > span.d0")
    assert len(blue) == sum(change < -8 for change in changes) == 2

    spans = browser.find_elements(By.CSS_SELECTOR, ".heat[data-set=d] > span")
    for index in (4, 6):  # " &amp;": B is 3.4 nats more confident; "é": 2 nats less
        difference = comparison.differences[index]
        tip = _hover(browser, spans[index])
        assert _text(tip, ".tip-text") == _visible(difference.text)
        assert _text(tip, ".tip-p-a") == _probability(math.exp(-difference.nats_a))
        assert _text(tip, ".tip-p-b") == _probability(math.exp(-difference.nats_b))
        assert _text(tip, ".tip-rank-a") == str(comparison.a.tokens[index].rank)
        assert _text(tip, ".tip-rank-b") == str(comparison.b.tokens[index].rank)
        assert _text(tip, ".tip-delta") == f"{changes[index]:+.3f} bits"
        assert _text(tip, ".tip-kl") == f"{difference.kl:.4f} nats"

    assert severe_console_messages(browser) == []
    save_screenshot(browser, tmp_path / "comparison.png")
