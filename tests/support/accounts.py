"""Accounts for tests: a user made straight in the database, with an API token and a known password."""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass

from app.core.db import session_scope
from app.core.resources import Resources
from app.core.services import accounts, api_tokens

PASSWORD = "correct horse battery staple"
CSRF_INPUT = re.compile(r'name="csrf_token" value="([^"]*)"')


@dataclass(frozen=True)
class Account:
    """A user the tests can act as: by token (API, CLI) or by logging in with the password (browser)."""

    id: int
    username: str
    password: str
    token: str
    is_admin: bool

    @property
    def headers(self) -> dict[str, str]:
        """The Authorization header of this user's API token."""
        return {"Authorization": f"Bearer {self.token}"}


def create_account(resources: Resources, username: str | None = None, *, admin: bool = False,
                   password: str = PASSWORD) -> Account:
    """A committed user (a unique name unless given) with one API token."""
    name = username or f"user-{uuid.uuid4().hex[:8]}"
    with session_scope(resources.session_factory) as session:
        user = accounts.create_user(session, name, password, is_admin=admin)
        _, token = api_tokens.create_token(session, user, "tests")
        return Account(user.id, user.username, password, token, admin)


def log_in(client, username: str, password: str, next_url: str = "/") -> str:  # noqa: ANN001
    """Sign an HTTP client in through the login form, as a browser does; returns the session's CSRF token."""
    form = client.get("/login")
    token = CSRF_INPUT.search(form.text).group(1)
    response = client.post("/login", data={"username": username, "password": password, "csrf_token": token,
                                           "next": next_url}, follow_redirects=False)
    assert response.status_code == 303, response.text
    return CSRF_INPUT.search(client.get("/account").text).group(1)
