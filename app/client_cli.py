"""CLI commands that talk to a running studio over its HTTP API."""

from __future__ import annotations

import json
import os
from pathlib import Path

import httpx
import typer

from worker.trainer.spec import RunSpec

SERVER = typer.Option(os.environ.get("LORASTUDIO_SERVER", "http://127.0.0.1:8000"), help="Studio URL.")
datasets_app = typer.Typer(help="Datasets on a running studio.", no_args_is_help=True)
runs_app = typer.Typer(help="Runs on a running studio.", no_args_is_help=True)


def _check(response: httpx.Response) -> dict | list:
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
def upload(path: Path = typer.Argument(..., exists=True, dir_okay=False), name: str = "", server: str = SERVER) -> None:
    """Upload a dataset file (streamed)."""
    with path.open("rb") as body:
        response = httpx.post(f"{server}/api/datasets", params={"filename": path.name, "name": name},
                              content=iter(lambda: body.read(1 << 20), b""), timeout=None)
    typer.echo(json.dumps(_check(response), indent=2, default=str))


@runs_app.command("create")
def create(spec_file: Path = typer.Argument(..., exists=True), server: str = SERVER) -> None:
    """Queue a run from a RunSpec YAML (data.dataset_id and model.base_model must name studio objects)."""
    spec = RunSpec.from_yaml(spec_file.read_text())
    response = httpx.post(f"{server}/api/runs", json=spec.model_dump(mode="json"), timeout=30)
    run = _check(response)
    typer.echo(f"run {run['id']} {run['status']}: {server}/runs/{run['id']}")


@runs_app.command("show")
def show(run_id: int, server: str = SERVER) -> None:
    """Print a run's state."""
    typer.echo(json.dumps(_check(httpx.get(f"{server}/api/runs/{run_id}", timeout=30)), indent=2))


@runs_app.command("download")
def download(run_id: int, out: Path = typer.Option(None, help="Zip file to write."), server: str = SERVER) -> None:
    """Download a run's adapter zip."""
    out = out or Path(f"run-{run_id}-adapter.zip")
    with httpx.stream("GET", f"{server}/api/runs/{run_id}/adapter", timeout=None) as response:
        if response.status_code >= 400:
            response.read()
            _check(response)
        with out.open("wb") as fileobj:
            for chunk in response.iter_bytes():
                fileobj.write(chunk)
    typer.echo(f"wrote {out}")
