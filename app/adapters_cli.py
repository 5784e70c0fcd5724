"""`lorastudio adapters`: the adapter registry of a running studio (register a run's adapter as a version, move
aliases, read lineage, download a version)."""

from __future__ import annotations

import json
from pathlib import Path

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
