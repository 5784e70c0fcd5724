"""The client commands' side of a running studio's HTTP API: an API token, and errors printed as the studio words
them (exit 1) rather than as tracebacks."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import typer

NO_TOKEN_HINT = "Pass --token or set LORASTUDIO_TOKEN (make one on the Account page or: lorastudio tokens create)."


class StudioClient:
    """One studio's API, signed in with a token (or not, where the studio lets anyone in)."""

    def __init__(self, server: str, token: str) -> None:
        self.server, self.token = server.rstrip("/"), token

    @property
    def headers(self) -> dict[str, str]:
        """The Authorization header, when there is a token."""
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}

    def get(self, path: str, **params: Any) -> Any:
        """GET a JSON answer."""
        return self.request("GET", path, params=params)

    def post(self, path: str, **kwargs: Any) -> Any:
        """POST (json=…, content=…, params=…) and return the JSON answer."""
        return self.request("POST", path, **kwargs)

    def request(self, method: str, path: str, timeout: float | None = 30, **kwargs: Any) -> Any:
        """One request; the studio's refusal, or no studio at all, is printed and exits 1."""
        with self.unreachable_exits():
            response = httpx.request(method, self.server + path, headers=self.headers, timeout=timeout, **kwargs)
        return self.check(response)

    @contextmanager
    def stream(self, path: str, headers: dict[str, str] | None = None,
               timeout: httpx.Timeout | float | None = None) -> Iterator[httpx.Response]:
        """A streamed GET whose refusal is printed (exit 1); transport errors are the caller's (to retry)."""
        with httpx.stream("GET", self.server + path, headers={**self.headers, **(headers or {})},
                          timeout=timeout) as response:
            if response.status_code >= 400:
                response.read()
                self.check(response)
            yield response

    @contextmanager
    def unreachable_exits(self) -> Iterator[None]:
        """Turn "nothing answers there" into a sentence naming the server and how to choose another."""
        try:
            yield
        except httpx.ConnectError as exc:
            typer.echo(f"error: no studio answers at {self.server} ({exc}). Is it running? Choose another with "
                       "--server or LORASTUDIO_SERVER.", err=True)
            raise typer.Exit(1) from None

    def check(self, response: httpx.Response) -> Any:
        """The JSON body of a success; an error response is printed (code, message, field, line) and exits 1."""
        if response.status_code == 401 and not self.token:
            typer.echo(f"error 401: the studio wants an API token. {NO_TOKEN_HINT}", err=True)
            raise typer.Exit(1)
        if response.status_code >= 400:
            try:
                error = response.json()["error"]
                where = "".join(f" ({k} {error[k]})" for k in ("field", "line") if error.get(k))
                typer.echo(f"error {response.status_code} {error['code']}: {error['message']}{where}", err=True)
            except (ValueError, KeyError, TypeError):
                typer.echo(f"error {response.status_code}: {response.text[:500]}", err=True)
            raise typer.Exit(1)
        return response.json() if response.content else None
