"""Signing in and out in a real browser: a page asked for while signed out comes back after the login form,
and the topbar's logout ends the session."""

from __future__ import annotations

import re

import pytest

pytestmark = pytest.mark.e2e


def test_log_in_comes_back_to_the_page_and_log_out_ends_the_session(browser, live_studio) -> None:  # noqa: ANN001
    context = browser.new_context(base_url=live_studio.url)
    page = context.new_page()
    try:
        page.goto("/datasets")
        page.wait_for_url(re.compile(r"/login\?next=%2Fdatasets$"))
        page.fill("#f-username", live_studio.username)
        page.fill("#f-password", "not the password")
        page.click("#login-submit")
        assert "Wrong username or password." in page.inner_text("#problem")
        page.fill("#f-password", live_studio.password)
        page.click("#login-submit")
        page.wait_for_url(re.compile(r"/datasets$"))
        assert page.inner_text("#account-link").startswith(live_studio.username)
        cookie = next(c for c in context.cookies() if c["name"] == "lorastudio_session")
        assert cookie["httpOnly"] and cookie["sameSite"] == "Lax"
        page.click("#logout")
        page.wait_for_url(re.compile(r"/login$"))
        page.goto("/")
        page.wait_for_url(re.compile(r"/login\?next=%2F$"))
    finally:
        context.close()
