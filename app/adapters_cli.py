"""`lorastudio adapters`: the adapter registry of a running studio (register a run's adapter as a version, move
aliases, read lineage, download a version, export one to merged or GGUF files and download those)."""

from __future__ import annotations

import hashlib
import json
import re
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

import typer

from app.client_cli import AS_JSON, SERVER, TOKEN, _table, save_download
from app.studio_client import StudioClient

adapters_app = typer.Typer(help="The adapter registry of a running studio: versions, aliases, lineage.",
                           no_args_is_help=True)


@adapters_app.command("list")
def list_adapters(server: str = SERVER, token: str = TOKEN, as_json: bool = AS_JSON) -> None:
    """Your registered adapters, their newest version and aliases."""
    adapters = StudioClient(server, token).get("/api/adapters")
    _table(adapters, [("NAME", lambda a: a["name"]),
                      ("VERSIONS", lambda a: len(a["versions"])),
                      ("NEWEST", lambda a: f"v{a['versions'][0]['version']}" if a["versions"] else ""),
                      ("ALIASES", lambda a: ", ".join(f"{k}=v{v}" for k, v in a["aliases"].items()))],
           "no adapters yet: lorastudio adapters register NAME --run RUN_ID", as_json)


@adapters_app.command("register")
def register(name: str, run: int = typer.Option(..., "--run", help="The run whose adapter to register."),
             step: int = typer.Option(None, "--step", help="One of the run's kept steps instead of its final adapter."),
             description: str = typer.Option("", help="What it is for."),
             server: str = SERVER, token: str = TOKEN) -> None:
    """Register a run's adapter (or a kept step's) as the next version of NAME (made if new)."""
    body = {"name": name, "run_id": run, "step": step, "description": description}
    version = StudioClient(server, token).post("/api/adapters", json=body)
    typer.echo(f"{name}:v{version['version']} registered (sha256 {version['sha256'][:16]}…); generate with it as "
               f"model {name}:v{version['version']}")


@adapters_app.command("show")
def show(name: str, server: str = SERVER, token: str = TOKEN, as_json: bool = AS_JSON) -> None:
    """An adapter's versions (with lineage in --json) and aliases."""
    adapter = StudioClient(server, token).get(f"/api/adapters/{name}")
    if as_json:
        typer.echo(json.dumps(adapter, indent=2))
        return
    aliases = {v: k for k, v in adapter["aliases"].items()}
    _table(adapter["versions"], [("VERSION", lambda v: f"v{v['version']}"), ("ALIAS", lambda v: aliases.get(
        v["version"], "")), ("FROM", lambda v: f"run {v['run_id']}" + (f" step {v['step']}" if v["step"] else "")),
        ("BASE", lambda v: v["base_name"]), ("SHA256", lambda v: v["sha256"][:16]),
        ("REGISTERED", lambda v: v["created_at"][:19])], f"{name} has no versions", False)


@adapters_app.command("alias")
def alias(name: str, alias_name: str = typer.Argument(..., metavar="ALIAS"),
          version: int = typer.Argument(..., help="The version number the alias points to (promote, roll back)."),
          server: str = SERVER, token: str = TOKEN) -> None:
    """Point ALIAS (production, staging) of NAME at a version; every move is audited."""
    StudioClient(server, token).request("PUT", f"/api/adapters/{name}/aliases/{alias_name}", json={"version": version})
    typer.echo(f"{name}:{alias_name} -> v{version}")


@adapters_app.command("delete-version")
def delete_version(name: str, version: int, server: str = SERVER, token: str = TOKEN) -> None:
    """Delete a version (refused while an alias points to it)."""
    StudioClient(server, token).request("DELETE", f"/api/adapters/{name}/versions/{version}")
    typer.echo(f"{name}:v{version} deleted")


@adapters_app.command("download")
def download(name: str, version: int, out: Path = typer.Option(None, help="Zip file to write."),
             server: str = SERVER, token: str = TOKEN) -> None:
    """Download a version's files as a zip."""
    save_download(StudioClient(server, token), f"/api/adapters/{name}/versions/{version}/download",
                  out or Path(f"{name}-v{version}.zip"))


@adapters_app.command("import")
def import_adapter(name: str, folder: Path = typer.Argument(..., help="A PEFT adapter folder: adapter_config.json "
                                                             "and adapter_model.safetensors."),
                   base: str = typer.Option(..., "--base", help="The registered base model it was trained on."),
                   description: str = typer.Option("", help="What it is for."),
                   server: str = SERVER, token: str = TOKEN) -> None:
    """Import a PEFT LoRA adapter trained elsewhere as the next version of NAME (checked before it is stored)."""
    config, weights = folder / "adapter_config.json", folder / "adapter_model.safetensors"
    for path in (config, weights):
        if not path.is_file():
            pickled = sorted(p.name for p in folder.glob("adapter_model.*") if p.suffix in (".bin", ".pt"))
            hint = f" ({', '.join(pickled)} is a pickle file: save with safe_serialization=True)" if pickled else ""
            typer.echo(f"error: {path} is missing{hint}", err=True)
            raise typer.Exit(1)
    with config.open("rb") as config_file, weights.open("rb") as weights_file:
        version = StudioClient(server, token).request(
            "POST", "/api/adapters/import", timeout=600,
            data={"name": name, "base_model": base, "description": description},
            files={"config": (config.name, config_file, "application/json"),
                   "weights": (weights.name, weights_file, "application/octet-stream")})
    typer.echo(f"{name}:v{version['version']} imported (sha256 {version['sha256'][:16]}…)")
    for warning in version["warnings"]:
        typer.echo(f"note: {warning}")


EXPORT_DONE = ("succeeded", "failed", "cancelled")
FORMAT_HELP = "merged (16-bit safetensors), gguf (f16 and Q8_0) or gguf_lora (GGUF LoRA + the base as f16 GGUF)."


def _version_ref(reference: str) -> tuple[str, int]:
    """NAME:vN as (name, N); anything else is an error naming the shape."""
    found = re.fullmatch(r"(.+):v([0-9]{1,9})", reference)
    if not found:
        typer.echo(f"error: {reference!r} is not NAME:vN (e.g. support-bot:v2)", err=True)
        raise typer.Exit(1)
    return found[1], int(found[2])


@adapters_app.command("export")
def export(reference: str = typer.Argument(..., metavar="NAME:vN"),
           fmt: str = typer.Option(..., "--format", help=FORMAT_HELP),
           wait: bool = typer.Option(False, "--wait", help="Wait for it, print its stages and verification; exit 0 "
                                     "only if it succeeded."),
           server: str = SERVER, token: str = TOKEN) -> None:
    """Export a version to merged or GGUF files, verified by generation against the adapter on its base."""
    name, version = _version_ref(reference)
    client = StudioClient(server, token)
    made = client.post(f"/api/adapters/{name}/versions/{version}/exports", json={"format": fmt})
    typer.echo(f"export {made['id']} of {name}:v{version} to {fmt}: {made['status']}")
    if wait:
        made = _wait_export(client, made["id"])
    if made["status"] in EXPORT_DONE:
        _print_export(made)
    if wait and made["status"] != "succeeded":
        raise typer.Exit(1)


def _wait_export(client: StudioClient, export_id: int, poll_s: float = 2.0) -> dict[str, Any]:
    """Print each stage as the exporter reaches it until the export ends; the export as it ended."""
    shown = None
    while True:
        made = client.get(f"/api/exports/{export_id}")
        progress = (made["status"], made["stage"], made["progress_done"], made["progress_total"])
        if progress != shown:
            shown = progress
            typer.echo(f"{progress[0]} {progress[2]}/{progress[3] or '?'} {progress[1]}".rstrip(), err=True)
        if made["status"] in EXPORT_DONE:
            return made
        time.sleep(poll_s)


def _print_export(made: dict[str, Any]) -> None:
    """An ended export: why it failed, or its verification and files."""
    if made["error"]:
        typer.echo(f"export {made['id']} {made['status']}: {made['error']}")
        return
    if made["agreement"] is not None:
        typer.echo(f"verification: {made['agreement'] * 100:.1f}% agreement with the adapter on its base")
    for file in made["files"]:
        typer.echo(f"  {file['name']}  {file['size']:,} bytes  sha256 {file['sha256']}")
    if made["files"]:
        typer.echo(f"download: lorastudio adapters export-download {made['id']}")


@adapters_app.command("exports")
def exports(reference: str = typer.Argument(..., metavar="NAME:vN"), server: str = SERVER, token: str = TOKEN,
            as_json: bool = AS_JSON) -> None:
    """A version's exports: format, state, verification, files."""
    name, version = _version_ref(reference)
    found = StudioClient(server, token).get(f"/api/adapters/{name}/versions/{version}/exports")
    _table(found, [("ID", lambda e: e["id"]), ("FORMAT", lambda e: e["format"]), ("STATUS", lambda e: e["status"]),
                   ("STAGE", lambda e: e["stage"] or ""),
                   ("AGREEMENT", lambda e: "" if e["agreement"] is None else f"{e['agreement'] * 100:.1f}%"),
                   ("FILES", lambda e: ", ".join(f["name"] for f in e["files"]))],
           f"{reference} has no exports yet: lorastudio adapters export {reference} --format gguf", as_json)


@adapters_app.command("export-download")
def export_download(export_id: int, file: str = typer.Option(None, "--file", help="Only this file (default: all)."),
                    out: Path = typer.Option(Path("."), "--out", help="Folder to write into."),
                    server: str = SERVER, token: str = TOKEN) -> None:
    """Download a succeeded export's files, each checked against its sha256 (a mismatch is removed, exit 1)."""
    client = StudioClient(server, token)
    made = client.get(f"/api/exports/{export_id}")
    files = [f for f in made["files"] if file is None or f["name"] == file]
    if not files:
        typer.echo(f"error: export {export_id} ({made['status']}) has no file{f' {file}' if file else 's'} to "
                   "download", err=True)
        raise typer.Exit(1)
    for item in files:
        if not (out / item["name"]).resolve().is_relative_to(out.resolve()):
            typer.echo(f"error: refusing the file name {item['name']!r} (it leaves {out})", err=True)
            raise typer.Exit(1)
        _download_checked(client, f"/api/exports/{export_id}/files/{quote(item['name'])}", out / item["name"],
                          item["sha256"])


def _download_checked(client: StudioClient, path: str, target: Path, sha256: str) -> None:
    """Stream path into target while hashing it; a file whose hash is not sha256 is removed and exits 1."""
    target.parent.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    with client.unreachable_exits(), client.stream(path) as response, target.open("wb") as fileobj:
        for chunk in response.iter_bytes():
            digest.update(chunk)
            fileobj.write(chunk)
    if digest.hexdigest() != sha256:
        target.unlink()
        typer.echo(f"error: {target.name} arrived with sha256 {digest.hexdigest()}, not {sha256}; removed", err=True)
        raise typer.Exit(1)
    typer.echo(f"wrote {target} (sha256 {sha256[:16]}… checked)")
