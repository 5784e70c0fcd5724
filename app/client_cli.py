"""CLI commands that talk to a running studio over its HTTP API, signed in with an API token: datasets, runs
(create, list, show, cancel, logs, download, with --follow for live progress) and models."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from datetime import datetime
from operator import itemgetter
from pathlib import Path
from typing import Any

import typer

from app import cli_specs
from app.cli_follow import follow
from app.studio_client import StudioClient

SERVER = typer.Option(os.environ.get("LORASTUDIO_SERVER", "http://127.0.0.1:8000"), help="Studio URL.")
TOKEN = typer.Option("", envvar="LORASTUDIO_TOKEN", show_default=False,
                     help="API token (Account page, or `lorastudio tokens create USERNAME`); env LORASTUDIO_TOKEN.")
AS_JSON = typer.Option(False, "--json", help="Print the studio's JSON instead of a table (for scripts).")
FOLLOW = typer.Option(False, "--follow", "-f", help="Show live progress until the run ends; exit 0 only if it "
                      "succeeded.")
datasets_app = typer.Typer(help="Datasets on a running studio.", no_args_is_help=True)
runs_app = typer.Typer(help="Runs on a running studio.", no_args_is_help=True)
models_app = typer.Typer(help="Base models registered on a running studio.", no_args_is_help=True)
Column = tuple[str, Callable[[dict[str, Any]], Any]]


def _table(items: list[dict[str, Any]], columns: list[Column], empty: str, as_json: bool) -> None:
    """Items as aligned columns (or the JSON list), or what to do when there are none."""
    if as_json:
        typer.echo(json.dumps(items, indent=2))
        return
    if not items:
        typer.echo(empty)
        return
    rows = [[title for title, _ in columns]] + [[_text(cell(item)) for _, cell in columns] for item in items]
    widths = [max(len(row[k]) for row in rows) for k in range(len(columns))]
    for row in rows:
        typer.echo("  ".join(text.ljust(width) for text, width in zip(row, widths, strict=True)).rstrip())


def _text(value: Any) -> str:
    return "" if value is None else str(value)


def _when(iso: str) -> str:
    """A stored time (UTC) in this machine's time zone, to the second."""
    return f"{datetime.fromisoformat(iso).astimezone():%Y-%m-%d %H:%M:%S}"


def _size(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


@datasets_app.command("upload")
def upload(path: Path = typer.Argument(..., exists=True, dir_okay=False), name: str = "", server: str = SERVER,
           token: str = TOKEN) -> None:
    """Upload a dataset file (streamed)."""
    client = StudioClient(server, token)
    with path.open("rb") as body:
        dataset = client.post("/api/datasets", params={"filename": path.name, "name": name}, timeout=None,
                              content=iter(lambda: body.read(1 << 20), b""))
    typer.echo(json.dumps(dataset, indent=2, default=str))


@datasets_app.command("list")
def list_datasets(server: str = SERVER, token: str = TOKEN, as_json: bool = AS_JSON) -> None:
    """Your datasets (an admin's: everyone's)."""
    columns: list[Column] = [("ID", itemgetter("id")), ("NAME", itemgetter("name")), ("FORMAT", itemgetter("format")),
                             ("ROWS", itemgetter("row_count")), ("SIZE", lambda d: _size(d["size_bytes"])),
                             ("UPLOADED", lambda d: _when(d["created_at"]))]
    _table(StudioClient(server, token).get("/api/datasets"), columns,
           "no datasets yet: lorastudio datasets upload FILE", as_json)


@datasets_app.command("delete")
def delete_dataset(dataset_id: int, server: str = SERVER, token: str = TOKEN) -> None:
    """Delete a dataset and its analyses (refused while a run uses it: delete those runs first)."""
    StudioClient(server, token).request("DELETE", f"/api/datasets/{dataset_id}")
    typer.echo(f"dataset {dataset_id} deleted")


@models_app.command("delete")
def delete_model(model_id: int, server: str = SERVER, token: str = TOKEN) -> None:
    """Unregister a base model (admins; refused while a run uses it)."""
    StudioClient(server, token).request("DELETE", f"/api/models/{model_id}")
    typer.echo(f"model {model_id} deleted")


@models_app.command("list")
def list_models(server: str = SERVER, token: str = TOKEN, as_json: bool = AS_JSON) -> None:
    """The registered base models (name them in a spec's model.base_model)."""
    columns: list[Column] = [("ID", itemgetter("id")), ("NAME", itemgetter("name")), ("SOURCE", itemgetter("source")),
                             ("REF", itemgetter("ref"))]
    _table(StudioClient(server, token).get("/api/models"), columns,
           "no models yet: lorastudio demo-model, or register one on the Models page", as_json)


@runs_app.command("create")
def create(spec_file: Path = typer.Argument(None, exists=True, dir_okay=False, show_default=False,
                                            help="A RunSpec YAML, e.g. a recipe from worker/planning/recipes/."),
           preset: str = typer.Option(None, help="Start from a studio preset instead (quick-qlora, balanced-lora, "
                                      "high-quality), fitted to the dataset's size as the designer does."),
           dataset: str = typer.Option(None, help="Dataset id or name; replaces the spec's data source."),
           model: str = typer.Option(None, help="Registered model name (lorastudio models list); replaces the "
                                     "spec's model.base_model."),
           name: str = typer.Option(None, help="The run's name."),
           server: str = SERVER, token: str = TOKEN, follow_run: bool = FOLLOW) -> None:
    """Queue a run from a RunSpec YAML or a preset, for a studio dataset and model."""
    if (spec_file is None) == (preset is None):
        typer.echo("error: give a spec file or --preset (one of them)", err=True)
        raise typer.Exit(2)
    client = StudioClient(server, token)
    spec = (cli_specs.from_preset(client, preset, dataset, model) if preset
            else cli_specs.from_file(client, spec_file, dataset, model))
    if name:
        spec["name"] = name
    run = client.post("/api/runs", json=spec)
    typer.echo(f"run {run['id']} {run['status']}: {client.server}/runs/{run['id']}")
    if follow_run:
        _follow_to_the_end(client, run["id"], seen=1)  # the timeline's `queued` entry


@runs_app.command("list")
def list_runs(status: str = typer.Option(None, help="Only runs in this state (queued, running, succeeded, …)."),
              server: str = SERVER, token: str = TOKEN, as_json: bool = AS_JSON) -> None:
    """Your runs (an admin's: everyone's), newest first."""
    def step(r: dict[str, Any]) -> str:
        return f"{r['current_step']}/{r['total_steps']}" if r["total_steps"] else str(r["current_step"])

    columns: list[Column] = [("ID", itemgetter("id")), ("NAME", itemgetter("name")), ("STATUS", itemgetter("status")),
                             ("METHOD", itemgetter("method")), ("STEP", step),
                             ("LOSS", lambda r: r["last_loss"] and f"{r['last_loss']:.4g}"),
                             ("CREATED", lambda r: _when(r["created_at"]))]
    runs = StudioClient(server, token).get("/api/runs", **({"status": status} if status else {}))
    _table(runs, columns, "no runs yet: lorastudio runs create SPEC.yaml", as_json)


@runs_app.command("show")
def show(run_id: int, server: str = SERVER, token: str = TOKEN) -> None:
    """Print a run's state (JSON)."""
    typer.echo(json.dumps(StudioClient(server, token).get(f"/api/runs/{run_id}"), indent=2))


@runs_app.command("cancel")
def cancel(run_id: int, server: str = SERVER, token: str = TOKEN) -> None:
    """Cancel a queued run now, or ask a running one to stop at its next step (the adapter so far is kept)."""
    run = StudioClient(server, token).post(f"/api/runs/{run_id}/cancel")
    if run["status"] == "cancelled":
        typer.echo(f"run {run_id} cancelled before it started")
    else:
        typer.echo(f"run {run_id}: cancel requested; it stops at its next step and keeps the adapter so far")


@runs_app.command("delete")
def delete_run(run_id: int, server: str = SERVER, token: str = TOKEN) -> None:
    """Delete a finished run with its metrics, timeline, checkpoints and adapter (cancel a live one first)."""
    StudioClient(server, token).request("DELETE", f"/api/runs/{run_id}")
    typer.echo(f"run {run_id} deleted")


@runs_app.command("logs")
def logs(run_id: int, server: str = SERVER, token: str = TOKEN, follow_run: bool = FOLLOW) -> None:
    """What happened to a run (its timeline); with --follow, then its live progress until it ends."""
    client = StudioClient(server, token)
    entries = client.get(f"/api/runs/{run_id}/timeline")
    for entry in entries:
        typer.echo(_entry_line(entry))
    if follow_run:
        _follow_to_the_end(client, run_id, seen=len(entries))


def _entry_line(entry: dict[str, Any]) -> str:
    return f"{_when(entry['created_at'])}  {entry['kind']:<16} {entry['message']}"


def _follow_to_the_end(client: StudioClient, run_id: int, seen: int) -> None:
    """Live progress until the run ends, then the timeline entries after the first `seen` (how it ended, and for
    a failure what to do); exits 0 when it succeeded, 1 when it failed or was cancelled."""
    try:
        progress = follow(client, run_id)
    except KeyboardInterrupt:
        typer.echo(f"\nstopped following; run {run_id} goes on (stop it: lorastudio runs cancel {run_id})", err=True)
        raise typer.Exit(130) from None
    for entry in client.get(f"/api/runs/{run_id}/timeline")[seen:]:
        typer.echo(_entry_line(entry))
    raise typer.Exit(0 if progress.status == "succeeded" else 1)


@runs_app.command("download")
def download(run_id: int, out: Path = typer.Option(None, help="Zip file to write."), server: str = SERVER,
             token: str = TOKEN) -> None:
    """Download a run's adapter zip."""
    save_download(StudioClient(server, token), f"/api/runs/{run_id}/adapter", out or Path(f"run-{run_id}-adapter.zip"))


def save_download(client: StudioClient, path: str, out: Path) -> None:
    """Stream a GET's body into the file out (a refusal is printed and exits 1), then say where it went."""
    with client.unreachable_exits(), client.stream(path) as response, out.open("wb") as fileobj:
        for chunk in response.iter_bytes():
            fileobj.write(chunk)
    typer.echo(f"wrote {out}")



eval_app = typer.Typer(help="Evaluations on a running studio: did the adapter help?", no_args_is_help=True)
EVAL_DONE = ("succeeded", "failed")


@eval_app.command("run")
def eval_run(dataset: int = typer.Option(..., "--dataset", help="The eval set's dataset id."),
             model: str = typer.Option(..., "--model", help="run-N (an adapter, compared with its base) or a base "
                                       "model's name."),
             scorer: list[str] = typer.Option(["exact"], "--scorer", help="exact, contains, regex, json, json_schema, "
                                              "choice, overlap or judge; repeat for several."),
             general: int = typer.Option(None, "--general", help="A general-ability dataset id."),
             max_examples: int = typer.Option(50, help="Rows used from each set."),
             max_new_tokens: int = typer.Option(64, help="Longest answer."), seed: int = 0,
             rubric: str = typer.Option(None, help="What the judge grades against."),
             follow_eval: bool = typer.Option(False, "--follow", "-f", help="Wait for it and print the report; exit "
                                              "0 only if it succeeded."),
             server: str = SERVER, token: str = TOKEN) -> None:
    """Queue an evaluation."""
    client = StudioClient(server, token)
    body = {"dataset_id": dataset, "model": model, "scorers": scorer, "general_dataset_id": general,
            "max_examples": max_examples, "max_new_tokens": max_new_tokens, "seed": seed, "rubric": rubric}
    evaluation = client.post("/api/evaluations", json=body)
    typer.echo(f"evaluation {evaluation['id']} queued: {model} on dataset {dataset}")
    if follow_eval:
        _follow_evaluation(client, evaluation["id"])


def _follow_evaluation(client: StudioClient, evaluation_id: int, poll_s: float = 1.0) -> None:
    """Print progress until the evaluation ends, then its report; exit 1 unless it succeeded."""
    shown = None
    while True:
        evaluation = client.get(f"/api/evaluations/{evaluation_id}", limit=1)
        progress = (evaluation["status"], evaluation["progress_done"], evaluation["progress_total"])
        if progress != shown:
            shown = progress
            typer.echo(f"{progress[0]} {progress[1]}/{progress[2] or '?'} generations", err=True)
        if evaluation["status"] in EVAL_DONE:
            break
        time.sleep(poll_s)
    _print_report(evaluation)
    if evaluation["status"] != "succeeded":
        raise typer.Exit(1)


def _print_report(evaluation: dict[str, Any]) -> None:
    """The report in words: each part's scorers, base vs adapter with intervals, flips, no measurable effect."""
    typer.echo(f"evaluation {evaluation['id']}: {evaluation['model']} ({evaluation['status']})")
    if evaluation["adapter_sha256"]:
        typer.echo(f"adapter sha256 {evaluation['adapter_sha256']}")
    if evaluation["error"]:
        typer.echo(f"error: {evaluation['error']}")
    for part in ("main", "general"):
        summary = evaluation["summary"].get(part)
        if not summary:
            continue
        typer.echo(f"{'eval set' if part == 'main' else 'general-ability set'}: {summary['n']} examples")
        for name, numbers in summary["scorers"].items():
            line = f"  {name}: base {_pct(numbers['base'])}"
            if "adapter" in numbers:
                diff = numbers["difference"]
                line += (f"  adapter {_pct(numbers['adapter'])}  difference {diff['mean'] * 100:+.1f} pts "
                         f"[{diff['ci'][0] * 100:+.1f}, {diff['ci'][1] * 100:+.1f}]")
            typer.echo(line)
        if summary["compared"]:
            typer.echo(f"  {summary['fixed']} wrong → right, {summary['regressed']} right → wrong")
        if summary["no_measurable_effect"]:
            typer.echo("  no measurable effect: the adapter's outputs equal the base model's on every prompt")


def _pct(side: dict[str, Any]) -> str:
    return f"{side['mean'] * 100:.1f}% [{side['ci'][0] * 100:.1f}, {side['ci'][1] * 100:.1f}]"


@eval_app.command("show")
def eval_show(evaluation_id: int, as_json: bool = AS_JSON, server: str = SERVER, token: str = TOKEN) -> None:
    """Print an evaluation's report (or its JSON, with the first page of examples)."""
    evaluation = StudioClient(server, token).get(f"/api/evaluations/{evaluation_id}")
    if as_json:
        typer.echo(json.dumps(evaluation, indent=2))
    else:
        _print_report(evaluation)


@eval_app.command("cancel")
def eval_cancel(evaluation_id: int, server: str = SERVER, token: str = TOKEN) -> None:
    """Cancel a queued evaluation now, or ask a running one to stop (nothing of it is stored)."""
    evaluation = StudioClient(server, token).post(f"/api/evaluations/{evaluation_id}/cancel")
    if evaluation["status"] == "cancelled":
        typer.echo(f"evaluation {evaluation_id} cancelled before it started")
    else:
        typer.echo(f"evaluation {evaluation_id}: stop requested; it ends within seconds, storing nothing")


@eval_app.command("delete")
def eval_delete(evaluation_id: int, server: str = SERVER, token: str = TOKEN) -> None:
    """Delete a finished evaluation with its examples (cancel a live one first)."""
    StudioClient(server, token).request("DELETE", f"/api/evaluations/{evaluation_id}")
    typer.echo(f"evaluation {evaluation_id} deleted")
