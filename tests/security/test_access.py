"""Generated over every route of the app: without credentials 401 (pages: off to the login page); another
user's object 404; its owner and an admin 200; a cookie request that changes something without the CSRF
token 403. A new route is covered as soon as it exists, and one these tests cannot build a request for fails."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from starlette.routing import Mount

from app.auth import PUBLIC_MOUNTS, PUBLIC_PATHS
from tests.security.conftest import Owned
from tests.support.accounts import Account, log_in

PARAM = re.compile(r"{(\w+)(?::\w+)?}")  # {name} or {name:path}
UNSAFE = {"POST", "PUT", "PATCH", "DELETE"}
# Routes the loops below leave to their own tests: logging out ends the session the loop runs on.
SIGNS_OUT = {("POST", "/logout")}
# Path parameters that name something every signed-in user shares (not an owned object), with a value to use.
SHARED = {"key": "quick-qlora"}


@dataclass(frozen=True)
class Endpoint:
    """One method of one route."""

    method: str
    path: str

    @property
    def params(self) -> list[str]:
        """The path parameters that must name an owned object (shared ones, like a preset's key, excepted)."""
        return [p for p in PARAM.findall(self.path) if p not in SHARED]

    @property
    def is_api(self) -> bool:
        """JSON API (401) rather than a page (redirect to login)."""
        return self.path.startswith(("/api/", "/v1/"))  # /v1: the OpenAI-compatible routes

    @property
    def public(self) -> bool:
        """On the explicit allow-list."""
        return self.path in PUBLIC_PATHS

    def url(self, ids: dict[str, int]) -> str:
        """The path with the owner's object ids filled in; a parameter nobody taught these tests fails here."""
        missing = [p for p in self.params if p not in ids]
        assert not missing, f"{self}: no owned object for {missing}; add one to the `owned` fixture"
        return PARAM.sub(lambda m: str({**SHARED, **ids}[m.group(1)]), self.path)

    def __str__(self) -> str:
        return f"{self.method} {self.path}"


def _routes(app) -> Iterator:  # noqa: ANN001
    """Every route, through included routers (newer FastAPI nests them; older ones list them flat)."""
    try:
        from fastapi.routing import iter_route_contexts
    except ImportError:
        yield from app.routes
        return
    for context in iter_route_contexts(app.routes):
        yield context.original_route


def endpoints(app) -> list[Endpoint]:  # noqa: ANN001
    """(method, path) of every route of the app; mounts are checked against PUBLIC_MOUNTS separately."""
    found = []
    for route in _routes(app):
        if isinstance(route, Mount):
            continue
        # The sign-in guard is a FastAPI dependency: a plain Starlette route would skip it.
        assert isinstance(route, APIRoute), f"{route!r} is not an APIRoute, so the sign-in guard would not run"
        found += [Endpoint(method, route.path) for method in sorted(route.methods)]
    return found


@pytest.fixture
def anonymous(app) -> Iterator[TestClient]:  # noqa: ANN001
    """A client without credentials."""
    with TestClient(app) as client:
        yield client


def _as(app, account: Account) -> TestClient:  # noqa: ANN001
    return TestClient(app, headers=account.headers)


def test_the_public_allow_list_is_short_and_explicit(app) -> None:  # noqa: ANN001
    assert {"/login", "/healthz", "/readyz", "/favicon.ico"} == PUBLIC_PATHS
    assert {"/static"} == PUBLIC_MOUNTS
    mounts = {route.path for route in _routes(app) if isinstance(route, Mount)}
    assert mounts <= PUBLIC_MOUNTS, f"mounts skip the sign-in guard; {mounts - PUBLIC_MOUNTS} is not public"
    paths = {e.path for e in endpoints(app)}
    assert paths >= PUBLIC_PATHS, "an allow-listed path names no route (remove it from the list)"
    assert len(endpoints(app)) >= 45  # the generation found the routes (a broken walk would prove nothing)


def test_public_routes_answer_anyone(anonymous: TestClient) -> None:
    for path in ("/login", "/healthz", "/readyz", "/favicon.ico", "/static/css/studio.css"):
        assert anonymous.get(path).status_code == 200, path


@pytest.mark.parametrize("credentials", ["none", "unknown token", "malformed header", "unknown session cookie"])
def test_without_valid_credentials_every_route_is_refused(app, owned: Owned, credentials: str) -> None:  # noqa: ANN001
    headers = {"unknown token": {"Authorization": "Bearer lst_not-a-real-token"},
               "malformed header": {"Authorization": "Basic dXNlcjpwYXNz"}}.get(credentials, {})
    cookies = {"lorastudio_session": "forged"} if credentials == "unknown session cookie" else {}
    failures = []
    with TestClient(app, headers=headers, cookies=cookies) as client:
        for endpoint in endpoints(app):
            if endpoint.public:
                continue
            response = client.request(endpoint.method, endpoint.url(owned.ids), follow_redirects=False)
            if endpoint.is_api:
                ok = response.status_code == 401 and response.headers.get("www-authenticate") == "Bearer" \
                    and response.json()["error"]["code"] in ("not_signed_in", "invalid_token", "bad_authorization")
            else:
                ok = response.status_code == 303 and response.headers["location"].startswith("/login")
            if not ok:
                failures.append(f"{endpoint}: {response.status_code} {response.text[:200]}")
    assert not failures, "\n".join(failures)


def test_a_page_asked_for_by_htmx_sends_the_browser_to_login(anonymous: TestClient) -> None:
    response = anonymous.get("/runs/table", headers={"HX-Request": "true"})
    assert response.status_code == 401 and response.headers["HX-Redirect"] == "/login?next=%2Fruns%2Ftable"


def test_login_brings_a_person_back_where_they_were_going(app, owner: Account) -> None:  # noqa: ANN001
    with TestClient(app) as client:
        sent_to = client.get("/datasets?x=1", follow_redirects=False).headers["location"]
        assert sent_to == "/login?next=%2Fdatasets%3Fx%3D1"
        page = client.get("/login?next=/datasets%3Fx%3D1")
        token = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)
        form = {"username": owner.username, "password": owner.password, "csrf_token": token, "next": "/datasets?x=1"}
        response = client.post("/login", data=form, follow_redirects=False)
    assert response.status_code == 303 and response.headers["location"] == "/datasets?x=1"


def test_another_users_objects_are_not_found(app, owned: Owned, stranger: Account) -> None:  # noqa: ANN001
    failures, checked = [], 0
    with _as(app, stranger) as client:
        for endpoint in endpoints(app):
            if not endpoint.params:
                continue
            checked += 1
            response = client.request(endpoint.method, endpoint.url(owned.ids), follow_redirects=False)
            if response.status_code != 404:
                failures.append(f"{endpoint}: {response.status_code} {response.text[:200]}")
    assert checked >= 18
    assert not failures, "\n".join(failures)


@pytest.mark.parametrize("who", ["owner", "admin"])
def test_the_owner_and_an_admin_see_them(app, owned: Owned, owner: Account, admin: Account, who: str) -> None:  # noqa: ANN001
    failures = []
    with _as(app, owner if who == "owner" else admin) as client:
        for endpoint in endpoints(app):
            if endpoint.params and endpoint.method == "GET":
                response = client.get(endpoint.url(owned.ids))
                if response.status_code != 200:
                    failures.append(f"{endpoint}: {response.status_code} {response.text[:200]}")
    assert not failures, "\n".join(failures)


def test_lists_show_a_user_only_their_own(app, owned: Owned, stranger: Account, admin: Account) -> None:  # noqa: ANN001
    secrets = (owned.dataset_name, owned.run_name)
    leaks = []
    with _as(app, stranger) as client:
        for endpoint in endpoints(app):
            if endpoint.method == "GET" and not endpoint.params and not endpoint.public:
                body = client.get(endpoint.path).text
                leaks += [f"{endpoint} shows {s}" for s in secrets if s in body]
    assert not leaks, "\n".join(leaks)
    with _as(app, admin) as client:  # the check above can fail: an admin's lists do show them
        for path in ("/api/datasets", "/datasets", "/runs/new"):
            assert owned.dataset_name in client.get(path).text, path
        for path in ("/api/runs", "/", "/runs/table", "/runs/compare"):
            assert owned.run_name in client.get(path).text, path


def test_ids_in_queries_and_bodies_reach_only_ones_own(app, owned: Owned, stranger: Account, owner: Account) -> None:  # noqa: ANN001
    run_id, dataset_id = owned.ids["run_id"], owned.ids["dataset_id"]
    spec = {"model": {"base_model": owned.model_name}, "data": {"dataset_id": dataset_id, "max_seq_length": 64}}
    with _as(app, stranger) as client:
        assert client.get(f"/runs/compare?ids={run_id}&ids={run_id}").status_code == 404
        assert client.get(f"/runs/new?clone={run_id}").status_code == 404
        refused = client.post("/api/runs", json=spec)
        assert refused.status_code == 422 and refused.json()["error"]["field"] == "data.dataset_id", refused.text
        form = client.post("/runs/yaml", data={"spec_yaml": json.dumps(spec)})  # JSON is YAML
        assert form.status_code == 422 and "Choose an uploaded dataset" in form.text
        assert client.post("/api/estimate", json=spec).json()["tokens"] is None  # its size tells nothing
    with _as(app, owner) as client:
        assert client.post("/api/estimate", json=spec).json()["tokens"] > 0


def test_a_cookie_request_that_changes_something_needs_the_csrf_token(app, owned: Owned, owner: Account) -> None:  # noqa: ANN001
    failures, checked = [], 0
    with TestClient(app) as client:
        csrf = log_in(client, owner.username, owner.password)
        for endpoint in endpoints(app):
            if endpoint.method not in UNSAFE or endpoint.public or (endpoint.method, endpoint.path) in SIGNS_OUT:
                continue
            checked += 1
            url = endpoint.url(owned.ids)
            refused = client.request(endpoint.method, url, **_body(endpoint, None), follow_redirects=False)
            if refused.status_code != 403 or "csrf_failed" not in refused.text:
                failures.append(f"{endpoint} without the token: {refused.status_code} {refused.text[:200]}")
            allowed = client.request(endpoint.method, url, **_body(endpoint, csrf), follow_redirects=False)
            if allowed.status_code in (401, 403):
                failures.append(f"{endpoint} with the token: {allowed.status_code} {allowed.text[:200]}")
    assert checked >= 15
    assert not failures, "\n".join(failures)


def _body(endpoint: Endpoint, csrf: str | None) -> dict:
    """What a browser sends: a form with the hidden field (pages), or JSON with the header (scripts)."""
    if endpoint.is_api:
        return {"json": {}, "headers": {"X-CSRF-Token": csrf} if csrf else {}}
    return {"data": {"csrf_token": csrf} if csrf else {}}


def test_bearer_token_requests_need_no_csrf_token(app, owner: Account) -> None:  # noqa: ANN001
    with _as(app, owner) as client:
        assert client.post("/api/models", json={"ref": "org/some-model"}).status_code == 201
        assert client.post("/account/tokens", data={"name": "from a script"}).status_code == 200


def test_logout_needs_the_csrf_token_and_ends_the_session(app, owner: Account) -> None:  # noqa: ANN001
    with TestClient(app) as client:
        csrf = log_in(client, owner.username, owner.password)
        cookie = client.cookies["lorastudio_session"]
        assert client.post("/logout", follow_redirects=False).status_code == 403
        response = client.post("/logout", data={"csrf_token": csrf}, follow_redirects=False)
        assert response.status_code == 303 and response.headers["location"] == "/login"
        assert client.get("/", follow_redirects=False).status_code == 303
        client.cookies.set("lorastudio_session", cookie)  # a copy of the cookie is worthless too: the row is gone
        assert client.get("/api/runs").status_code == 401


def test_the_login_form_is_guarded_against_login_csrf(app, owner: Account) -> None:  # noqa: ANN001
    with TestClient(app) as client:
        form = {"username": owner.username, "password": owner.password, "csrf_token": "from-another-site"}
        response = client.post("/login", data=form, follow_redirects=False)
    assert response.status_code == 403 and "csrf_failed" in response.text
