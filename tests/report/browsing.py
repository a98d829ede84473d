"""Opening a report in the test browser (conftest.py's ``browser``) and checking what it did."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.command import Command
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.remote.webelement import WebElement


def open_page(driver: WebDriver, page: str, path: Path) -> None:
    """Write ``page`` to ``path`` and open it; the console log then holds only this page's."""
    path.write_text(page, encoding="utf-8")
    driver.get(path.as_uri())
    _browser_log(driver)  # reading the log empties it: each page starts with its own


def severe_console_messages(driver: WebDriver) -> list[str]:
    """Errors, failed loads and Content-Security-Policy violations the page caused."""
    return [entry["message"] for entry in _browser_log(driver) if entry["level"] == "SEVERE"]


def _browser_log(driver: WebDriver) -> list[dict[str, Any]]:
    """The console entries since the last read: what Chromium's ``get_log("browser")`` returns.

    The fixture's driver is a ``Chrome``, but the tests hold it as a ``WebDriver``, which has no
    ``get_log``; so this sends the command ``get_log`` sends, through the typed ``execute``.
    """
    entries: list[dict[str, Any]] = driver.execute(Command.GET_LOG, {"type": "browser"})["value"]
    return entries


def save_screenshot(driver: WebDriver, path: Path) -> None:
    """Save what the browser shows to ``path``, and check that it is a PNG with some content."""
    driver.save_screenshot(str(path))
    data = path.read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    assert len(data) > 20_000


def hover(driver: WebDriver, element: WebElement) -> WebElement:
    """Move the mouse over ``element``, and return the tooltip it showed."""
    ActionChains(driver).move_to_element(element).perform()
    tip = driver.find_element(By.ID, "tip")
    assert tip.is_displayed()
    return tip


def text_of(root: WebDriver | WebElement, selector: str) -> str:
    """The text the browser shows of the first element below ``root`` matching ``selector``."""
    return root.find_element(By.CSS_SELECTOR, selector).text
