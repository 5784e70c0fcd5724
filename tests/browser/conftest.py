"""Headless Debian Chromium driven by Playwright, against the live studio of tests/e2e, logged in."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.requirements import require

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "screenshots"
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update"]


@pytest.fixture(scope="session")
def browser() -> Iterator:
    """One headless Chromium for the session (CI must have it: .ci/run installs it)."""
    require(CHROMIUM.exists(), "Chromium is missing at /usr/bin/chromium: apt-get install chromium "
            "(scripts/studio.sh test installs it)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        instance = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=FLAGS)
        yield instance
        instance.close()


def log_in(page, username: str, password: str) -> None:  # noqa: ANN001
    """Sign in through the login form, as a person does."""
    page.goto("/login")
    page.fill("#f-username", username)
    page.fill("#f-password", password)
    page.click("#login-submit")
    page.wait_for_selector("#account-link")


@pytest.fixture
def page(browser, live_studio) -> Iterator:  # noqa: ANN001
    """A fresh page whose relative URLs go to the live studio, logged in as the studio's admin."""
    context = browser.new_context(base_url=live_studio.url, viewport={"width": 1280, "height": 900},
                                  accept_downloads=True)
    page = context.new_page()
    log_in(page, live_studio.username, live_studio.password)
    yield page
    context.close()


def screenshot(page, name: str) -> Path:  # noqa: ANN001
    """Save a full-page screenshot as a test artifact (not committed)."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path
