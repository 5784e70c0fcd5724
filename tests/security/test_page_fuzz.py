"""Every GET page route (they are not in the OpenAPI schema, so schemathesis never reaches them) answered with odd
path and query values: non-ASCII digits, huge, negative and empty numbers, very long and control-character strings.
None may get a server error; a bad value is a 4xx (or the page shown without it)."""

from __future__ import annotations

import re
from urllib.parse import quote

import pytest
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.pages import account, compare, datasets, designer, login, models, runs
from tests.security.conftest import Owned

PAGE_ROUTERS = (account, compare, datasets, designer, login, models, runs)
ODD = ["١٢", "٣", "²", "①", "1e3", "0x10", "-1", "0", "", " ", "9" * 30, str(2**31), str(2**63), "-" + "9" * 25,
       "1.5", "NaN", "x" * 5000, "\u00e9\u0000\u202e", "%", "../../etc/passwd", "1,2", "+1", " 1 ", "1_000"]
PARAM = re.compile(r"{(\w+)}")
EXAMPLES = 60


def page_routes() -> list[tuple[str, list[str]]]:
    """(path template, query parameter names) of every GET page route."""
    found = []
    for module in PAGE_ROUTERS:
        for route in module.router.routes:
            if isinstance(route, APIRoute) and "GET" in route.methods:
                found.append((route.path, [p.alias for p in route.dependant.query_params]))
    return found


ROUTES = page_routes()


def _url(template: str, values: dict[str, str], query: list[tuple[str, str]]) -> str:
    path = PARAM.sub(lambda m: quote(values[m.group(1)], safe=""), template)
    return path + ("?" + "&".join(f"{k}={quote(v, safe='')}" for k, v in query) if query else "")


@pytest.fixture
def signed_in(app, admin) -> TestClient:  # noqa: ANN001
    """The admin's client (sees every object, so the odd values reach the routes' own checks)."""
    with TestClient(app, headers=admin.headers, follow_redirects=False) as client:
        yield client


def _check(client: TestClient, url: str) -> None:
    response = client.get(url)
    assert response.status_code < 500, f"GET {url[:300]} -> {response.status_code}: {response.text[:500]}"


def test_the_page_routes_are_all_found() -> None:
    paths = {path for path, _ in ROUTES}
    assert {"/runs/compare", "/datasets/{dataset_id}", "/runs/{run_id}", "/login", "/runs/new"} <= paths


@pytest.mark.parametrize(("template", "query"), ROUTES, ids=[path for path, _ in ROUTES])
def test_every_odd_value_in_every_place_is_no_server_error(signed_in: TestClient, owned: Owned, template: str,
                                                          query: list[str]) -> None:
    real = {name: str(owned.ids.get(name, 1)) for name in PARAM.findall(template)}
    for name in real:
        for odd in ODD:
            _check(signed_in, _url(template, {**real, name: odd}, []))
    for name in query:
        for odd in ODD:
            _check(signed_in, _url(template, real, [(name, odd)]))
            _check(signed_in, _url(template, real, [(name, odd), (name, odd)]))


@given(route=st.sampled_from(ROUTES), value=st.text(max_size=300) | st.integers().map(str) | st.sampled_from(ODD),
       repeat=st.integers(1, 3))
@settings(max_examples=EXAMPLES, derandomize=True, deadline=None, database=None,
          suppress_health_check=list(HealthCheck))
def test_generated_values_are_no_server_error(signed_in: TestClient, owned: Owned, route: tuple[str, list[str]],
                                             value: str, repeat: int) -> None:
    template, query = route
    names = PARAM.findall(template)
    real = {name: str(owned.ids.get(name, 1)) for name in names}
    for name in names:
        _check(signed_in, _url(template, {**real, name: value}, []))
    _check(signed_in, _url(template, real, [(name, value) for name in query for _ in range(repeat)]))
