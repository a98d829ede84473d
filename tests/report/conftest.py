"""The real browser the HTML pages are tested in: Debian's Chromium, driven through Selenium.

``make test`` installs Chromium when missing; the browser tests skip, saying why, when it is not
there.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from selenium.webdriver import Chrome, ChromeOptions
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.remote.webdriver import WebDriver

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")


@pytest.fixture(scope="session")
def browser() -> Iterator[WebDriver]:
    missing = [str(path) for path in (CHROMIUM, CHROMEDRIVER) if not path.exists()]
    if missing:
        log = Path(sys.prefix) / "chromium-install.log"  # written by `make test` when apt fails
        if log.exists():
            lines = log.read_text().strip().splitlines()
            why = f"could not be installed: {lines[-1] if lines else f'see {log}'}"
        else:
            why = "`make test` installs it"
        pytest.skip(f"chromium is not installed ({', '.join(missing)} missing); {why}")
    options = ChromeOptions()
    # a fixed binary and driver, so selenium-manager never looks for one on the network
    options.binary_location = str(CHROMIUM)
    for argument in (
        "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--window-size=1280,1600",
    ):  # fmt: skip
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = Chrome(service=Service(executable_path=str(CHROMEDRIVER)), options=options)
    yield driver
    driver.quit()
