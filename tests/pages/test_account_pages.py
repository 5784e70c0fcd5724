"""The login and account pages, and the CSRF token in every form a signed-in browser is shown."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from tests.pages.test_pages import designer_form, parse_controls
from tests.support.accounts import Account, create_account, log_in


class Forms(HTMLParser):
    """Each form's method and action, and the value of its csrf_token field."""

    def __init__(self) -> None:
        super().__init__()
        self.forms: list[dict[str, str | None]] = []
        self.body: dict[str, str | None] = {}

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attr = dict(attrs)
        if tag == "body":
            self.body = attr
        elif tag == "form":
            self.forms.append({"method": (attr.get("method") or "get").lower(), "action": attr.get("action"),
                               "csrf": None})
        elif tag == "input" and attr.get("name") == "csrf_token" and self.forms:
            self.forms[-1]["csrf"] = attr.get("value")


@pytest.fixture(scope="module")
def person(resources) -> Account:  # noqa: ANN001
    """An ordinary user."""
    return create_account(resources)


@pytest.fixture
def browser(app, person: Account) -> Iterator[tuple[TestClient, str]]:  # noqa: ANN001
    """A client signed in with a session cookie, as a browser is, and the session's CSRF token."""
    with TestClient(app) as client:
        yield client, log_in(client, person.username, person.password)


def test_the_login_page_is_labelled_and_shows_no_studio_navigation(app) -> None:  # noqa: ANN001
    with TestClient(app) as client:
        page = client.get("/login").text
    assert parse_controls(page).unlabelled() == []
    assert 'aria-label="Main"' not in page and "Log out" not in page


def test_the_account_page_lists_tokens_and_is_labelled(browser, person: Account) -> None:  # noqa: ANN001
    client, _ = browser
    page = client.get("/account").text
    assert person.username in page and "tests" in page and person.token[:12] in page  # prefix only
    assert person.token not in page
    assert parse_controls(page).unlabelled() == []


def test_every_post_form_a_signed_in_browser_sees_carries_the_csrf_token(browser, tmp_path: Path) -> None:  # noqa: ANN001
    client, csrf = browser
    upload = client.post("/datasets", data={"csrf_token": csrf, "name": "mine"}, follow_redirects=False,
                         files={"file": ("c.jsonl", json.dumps({"text": "hello"}).encode())})
    dataset_path = upload.headers["location"]
    dataset_id = int(dataset_path.rsplit("/", 1)[1])
    model = "HuggingFaceTB/SmolLM2-135M-Instruct"
    client.post("/models", data={"csrf_token": csrf, "ref": model}, follow_redirects=False)
    run = client.post("/runs", data={**designer_form(model, dataset_id), "csrf_token": csrf}, follow_redirects=False)
    assert run.status_code == 303, run.text
    pages = ["/", "/datasets", dataset_path, "/models", "/runs/new", run.headers["location"], "/account",
             "/runs/compare"]
    seen = 0
    for path in pages:
        parser = Forms()
        parser.feed(client.get(path).text)
        assert json.loads(parser.body["hx-headers"]) == {"X-CSRF-Token": csrf}, path  # htmx sends it too
        for form in parser.forms:
            if form["method"] == "post":
                seen += 1
                assert form["csrf"] == csrf, (path, form)
    assert seen >= 9  # upload, doctor, model, designer, YAML, cancel, token, password, logout forms


def test_a_stale_form_gets_a_page_that_says_what_to_do(browser) -> None:  # noqa: ANN001
    client, _ = browser
    response = client.post("/models", data={"ref": "org/model", "csrf_token": "from an old page"})
    assert response.status_code == 403 and "text/html" in response.headers["content-type"]
    assert re.search(r"Reload the page and send it\s+again", response.text)
