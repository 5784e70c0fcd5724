"""CLI commands that talk to a running studio over its HTTP API, signed in with an API token."""

from __future__ import annotations

import json
import os
from pathlib import Path

import httpx
import typer

from worker.planning.spec import RunSpec

SERVER = typer.Option(os.environ.get("LORASTUDIO_SERVER", "http://127.0.0.1:8000"), help="Studio URL.")
TOKEN = typer.Option("", envvar="LORASTUDIO_TOKEN", show_default=False,
                     help="API token (Account page, or `lorastudio tokens create USERNAME`); env LORASTUDIO_TOKEN.")
NO_TOKEN_HINT = "Pass --token or set LORASTUDIO_TOKEN (make one on the Account page or: lorastudio tokens create)."
datasets_app = typer.Typer(help="Datasets on a running studio.", no_args_is_help=True)
runs_app = typer.Typer(help="Runs on a running studio.", no_args_is_help=True)


def _auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"} if token else {}


def _check(response: httpx.Response, token: str = "") -> dict | list:
    if response.status_code == 401 and not token:
        typer.echo(f"error 401: the studio wants an API token. {NO_TOKEN_HINT}", err=True)
        raise typer.Exit(1)
    if response.status_code >= 400:
        try:
            error = response.json()["error"]
            where = "".join(f" ({k} {error[k]})" for k in ("field", "line") if error.get(k))
            typer.echo(f"error {response.status_code} {error['code']}: {error['message']}{where}", err=True)
        except (ValueError, KeyError):
            typer.echo(f"error {response.status_code}: {response.text[:500]}", err=True)
        raise typer.Exit(1)
    return response.json()


@datasets_app.command("upload")
def upload(path: Path = typer.Argument(..., exists=True, dir_okay=False), name: str = "", server: str = SERVER,
           token: str = TOKEN) -> None:
    """Upload a dataset file (streamed)."""
    with path.open("rb") as body:
        response = httpx.post(f"{server}/api/datasets", params={"filename": path.name, "name": name},
                              content=iter(lambda: body.read(1 << 20), b""), headers=_auth(token), timeout=None)
    typer.echo(json.dumps(_check(response, token), indent=2, default=str))


@runs_app.command("create")
def create(spec_file: Path = typer.Argument(..., exists=True), server: str = SERVER, token: str = TOKEN) -> None:
    """Queue a run from a RunSpec YAML (data.dataset_id and model.base_model must name studio objects)."""
    spec = RunSpec.from_yaml(spec_file.read_text())
    response = httpx.post(f"{server}/api/runs", json=spec.model_dump(mode="json"), headers=_auth(token), timeout=30)
    run = _check(response, token)
    typer.echo(f"run {run['id']} {run['status']}: {server}/runs/{run['id']}")


@runs_app.command("show")
def show(run_id: int, server: str = SERVER, token: str = TOKEN) -> None:
    """Print a run's state."""
    response = httpx.get(f"{server}/api/runs/{run_id}", headers=_auth(token), timeout=30)
    typer.echo(json.dumps(_check(response, token), indent=2))


@runs_app.command("download")
def download(run_id: int, out: Path = typer.Option(None, help="Zip file to write."), server: str = SERVER,
             token: str = TOKEN) -> None:
    """Download a run's adapter zip."""
    out = out or Path(f"run-{run_id}-adapter.zip")
    with httpx.stream("GET", f"{server}/api/runs/{run_id}/adapter", headers=_auth(token), timeout=None) as response:
        if response.status_code >= 400:
            response.read()
            _check(response, token)
        with out.open("wb") as fileobj:
            for chunk in response.iter_bytes():
                fileobj.write(chunk)
    typer.echo(f"wrote {out}")
