"""A real Chromium (Debian's, installed by `make browser`) driven by Playwright's sync API.

Playwright's own browser downloads are never used: the browser is the system's /usr/bin/chromium. It is
started once per module and stopped with it, so no Playwright event loop outlives the browser tests.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, sync_playwright

CHROMIUM = Path("/usr/bin/chromium")
VIEWPORT = {"width": 1280, "height": 900}  # the console must fit a 1280 px wide screen


@pytest.fixture(scope="module")
def chromium() -> Iterator[Browser]:
    if not CHROMIUM.exists():
        pytest.fail(f"chromium is not installed at {CHROMIUM}: run `make browser` first", pytrace=False)
    with sync_playwright() as playwright:
        # Chromium's sandbox cannot start as root (the test machine's user): --no-sandbox.
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        yield browser
        browser.close()


@pytest.fixture()
def browser_page(chromium: Browser) -> Iterator[Page]:
    """A fresh browser context (no cookies) and its one page."""
    context = chromium.new_context(viewport=VIEWPORT, accept_downloads=True)  # type: ignore[arg-type]
    page = context.new_page()
    page.set_default_timeout(20_000)
    yield page
    context.close()
