"""The training run's plot and HTML page.

The records are written by hand, with tokens per step that vary and a validation loss that rises
again after its lowest point, so every expected value (the best row, where a point is drawn, what a
cell shows) is computed here from them, not read back from the implementation.
"""

from __future__ import annotations

import math
import re
import struct
from pathlib import Path
from xml.etree import ElementTree

import numpy as np
import pytest
from matplotlib.image import imread
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver

from crossent.report import training
from crossent.report.training import losses_svg, plot_losses, render_training_report
from crossent.training.records import EvalRecord
from report.browsing import open_page, save_screenshot, severe_console_messages
from report.parsing import ParsedPage
from training.sample_records import BEST, RECORDS, ROWS

CONFIG: dict[str, object] = {
    "preset": "tiny",
    "lr": 3e-4,
    "out": "<script>alert(1)</script>",
    "layers": [2, 2],
    "compile": True,
}
SUMMARY: dict[str, object] = {"<em>stopped</em>": "early at step 300", "parameters": 1_234_567}
SVG_NS = "{http://www.w3.org/2000/svg}"
XLINK_HREF = "{http://www.w3.org/1999/xlink}href"


# The plot.


def test_plot_losses_writes_a_png(tmp_path: Path) -> None:
    path = tmp_path / "losses.png"
    plot_losses(RECORDS, path)
    data = path.read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    assert data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    pixels = imread(path)
    assert pixels.shape[:2] == (height, width)
    assert width > 600
    assert height > 300
    assert float(np.var(pixels[..., :3])) > 0
    assert [entry.name for entry in tmp_path.iterdir()] == ["losses.png"]  # no temporary file


def test_plot_losses_refuses_what_it_cannot_draw(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no evaluation records"):
        plot_losses([], tmp_path / "losses.png")
    repeated = [*RECORDS[:3], RECORDS[1]]
    with pytest.raises(ValueError, match=r"step 50 \(25600 tokens seen\) follows step 100"):
        plot_losses(repeated, tmp_path / "losses.png")
    assert list(tmp_path.iterdir()) == []


def _vertices(root: ElementTree.Element, group_id: str) -> np.ndarray:
    """The (x, y) points of the one path in the group ``group_id``."""
    group = root.find(f".//{SVG_NS}g[@id='{group_id}']")
    assert group is not None, f"no group {group_id}"
    paths = group.findall(f"{SVG_NS}path")
    assert len(paths) == 1
    commands = re.findall(r"([MLCQZz])", paths[0].attrib["d"])
    assert set(commands) <= {"M", "L"}  # one straight line
    numbers = [float(number) for number in re.findall(r"-?\d+(?:\.\d+)?", paths[0].attrib["d"])]
    return np.array(numbers).reshape(-1, 2)


def test_svg_draws_both_curves_at_the_records() -> None:
    svg = losses_svg(RECORDS)
    root = ElementTree.fromstring(svg)
    train = _vertices(root, "train-loss")
    validation = _vertices(root, "validation-loss")
    assert len(train) == len(validation) == len(ROWS)

    steps = np.array([row[0] for row in ROWS], dtype=float)
    losses = np.array([row[2] for row in ROWS] + [row[3] for row in ROWS])
    # x is one affine function of the step for both curves
    for curve in (train, validation):
        x_slope = (curve[-1, 0] - curve[0, 0]) / (steps[-1] - steps[0])
        assert x_slope > 0
        np.testing.assert_allclose(curve[:, 0], curve[0, 0] + x_slope * steps, atol=1e-3)
    # y is one affine function of the loss for both curves, higher loss higher up (smaller y)
    y = np.concatenate([train[:, 1], validation[:, 1]])
    y_slope = (y[1] - y[0]) / (losses[1] - losses[0])
    assert y_slope < 0
    np.testing.assert_allclose(y, y[0] + y_slope * (losses - losses[0]), atol=1e-3)

    marker = root.find(f".//{SVG_NS}g[@id='best-validation']")
    assert marker is not None
    uses = marker.findall(f".//{SVG_NS}use")
    assert len(uses) == 1
    drawn_at = (float(uses[0].attrib["x"]), float(uses[0].attrib["y"]))
    np.testing.assert_allclose(drawn_at, validation[BEST], atol=1e-3)

    # nothing a Content-Security-Policy without inline style would block, nothing outside
    assert root.find(f".//{SVG_NS}style") is None
    assert not [element.tag for element in root.iter() if "style" in element.attrib]
    assert all(element.attrib[XLINK_HREF].startswith("#") for element in root.iter(f"{SVG_NS}use"))
    assert losses_svg(RECORDS) == svg  # the same records, the same figure


def test_top_axis_shows_the_tokens_seen_at_each_evaluation() -> None:
    # through the private figure: the PNG and SVG give no numbers to read the axis back from
    figure = training._figure(RECORDS)
    figure.canvas.draw()
    axes = figure.axes[0]
    (top,) = axes.child_axes
    for step, tokens, *_ in ROWS:
        x = axes.transData.transform((step, 0.0))[0]
        assert top.transData.inverted().transform((x, 0.0))[0] == pytest.approx(tokens, abs=1e-6)


# The HTML page.


def _page(records: list[EvalRecord] = RECORDS) -> str:
    return render_training_report(records, CONFIG, summary=SUMMARY, title="run <i>1</i>")


def test_page_loads_nothing_and_allows_no_script() -> None:
    parsed = ParsedPage(_page())
    policies = [
        attributes["content"]
        for tag, attributes in parsed.tags
        if tag == "meta" and attributes.get("http-equiv") == "Content-Security-Policy"
    ]
    assert len(policies) == 1
    assert policies[0] is not None
    assert "default-src 'none'" in policies[0]
    assert "script-src 'none'" in policies[0]
    assert "unsafe" not in policies[0]
    for tag, attributes in parsed.tags:
        assert tag not in {"script", "link", "img", "iframe", "object", "embed", "base"}
        for name in ("src", "srcset", "action", "style"):
            assert name not in attributes, f"<{tag} {name}=...>"
        for name, value in attributes.items():
            if name in {"href", "xlink:href"}:
                assert value is not None
                assert value.startswith("#")  # a reference inside the SVG
            elif not name.startswith("xmlns"):  # namespace names, never fetched
                assert "://" not in (value or "")
                assert "url(" not in (value or "") or (value or "").startswith("url(#")
    assert "url(" not in parsed.style
    assert "@import" not in parsed.style


def test_page_escapes_texts_and_shows_the_settings() -> None:
    parsed = ParsedPage(_page())
    assert not any(tag in {"i", "em", "script"} for tag, _ in parsed.tags)
    assert dict(parsed.rows["settings config"]) == {
        "preset": "tiny",
        "lr": "0.0003",
        "out": "<script>alert(1)</script>",
        "layers": "[2, 2]",
        "compile": "true",
    }
    assert dict(parsed.rows["settings summary"]) == {
        "<em>stopped</em>": "early at step 300",
        "parameters": "1234567",
    }


def test_page_tables_one_row_per_record_with_its_units() -> None:
    parsed = ParsedPage(_page())
    header, *rows = parsed.rows["records"]
    assert header == [
        "step", "tokens seen", "train loss, nats/token", "val loss, nats/token", "val bits/byte",
        "val perplexity", "learning rate", "elapsed, s",
    ]  # fmt: skip
    assert len(rows) == len(ROWS)
    for cells, (step, tokens, train, val, bits, lr, elapsed) in zip(rows, ROWS, strict=True):
        assert cells == [
            str(step), str(tokens), f"{train:.4f}", f"{val:.4f}", f"{bits:.4f}",
            f"{math.exp(val):.3f}", f"{lr:.3g}", f"{elapsed:.1f}",
        ]  # fmt: skip
    marked = [
        attributes for tag, attributes in parsed.tags if tag == "tr" and attributes.get("class")
    ]
    assert marked == [{"class": "best", "title": "lowest validation loss"}]


def test_page_without_records_says_so() -> None:
    page = _page([])
    parsed = ParsedPage(page)
    assert "No evaluation was recorded." in page
    assert not any(tag in {"svg", "figure"} for tag, _ in parsed.tags)
    assert "records" not in parsed.rows
    assert dict(parsed.rows["settings config"])["preset"] == "tiny"


def test_page_in_a_browser(browser: WebDriver, tmp_path: Path) -> None:
    open_page(browser, _page(), tmp_path / "training.html")

    rows = browser.find_elements(By.CSS_SELECTOR, "table.records tbody tr")
    assert len(rows) == len(ROWS)
    best = browser.find_elements(By.CSS_SELECTOR, "table.records tr.best")
    assert len(best) == 1
    assert best[0].find_element(By.CSS_SELECTOR, "[data-metric=step]").text == str(ROWS[BEST][0])
    assert best[0].find_element(By.CSS_SELECTOR, "[data-metric=val_perplexity]").text == (
        f"{math.exp(ROWS[BEST][3]):.3f}"
    )
    other = rows[BEST - 1].find_element(By.TAG_NAME, "td")
    highlighted = best[0].find_element(By.TAG_NAME, "td")
    assert highlighted.value_of_css_property("background-color") != other.value_of_css_property(
        "background-color"
    )
    headline = browser.find_element(By.CSS_SELECTOR, ".headline").text
    assert headline.startswith(f"{ROWS[BEST][4]:.4f} bits per byte")
    assert f"step {ROWS[BEST][0]}" in headline

    config = {
        row.find_element(By.TAG_NAME, "th").text: row.find_element(By.TAG_NAME, "td").text
        for row in browser.find_elements(By.CSS_SELECTOR, "table.config tr")
    }
    assert config["out"] == "<script>alert(1)</script>"
    assert browser.find_element(By.TAG_NAME, "h1").text == "run <i>1</i>"

    svg = browser.find_element(By.CSS_SELECTOR, "figure.losses svg")
    assert svg.size["width"] > 400
    assert svg.size["height"] > 200
    for group in ("train-loss", "validation-loss"):
        path = browser.find_element(By.CSS_SELECTOR, f"g[id={group}] path")
        box = browser.execute_script("return arguments[0].getBBox()", path)
        assert box["width"] > 100
        assert box["height"] > 10
        # drawn as a stroke, as the presentation attributes say, not filled black
        computed = "return getComputedStyle(arguments[0]).getPropertyValue(arguments[1])"
        assert browser.execute_script(computed, path, "stroke") != "none"
        assert browser.execute_script(computed, path, "fill") == "none"

    assert severe_console_messages(browser) == []
    save_screenshot(browser, tmp_path / "training.png")
