"""The spec `lorastudio runs create` sends: a YAML file or a studio preset, with --dataset and --model filled in,
so a recipe from worker/planning/recipes/ works as it ships (its model and data are placeholders)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from app.core.config import get_settings
from app.studio_client import StudioClient
from worker.planning import safe_yaml
from worker.planning.safe_yaml import YamlLimits, YamlRefused


def dataset_id(client: StudioClient, ref: str) -> int:
    """A dataset given by id or by name (the newest of that name, then of that file name)."""
    if ref.isdecimal():
        return int(ref)
    datasets = client.get("/api/datasets")
    for key in ("name", "filename"):
        found = [d for d in datasets if d.get(key) == ref]
        if found:
            return max(found, key=lambda d: d["id"])["id"]
    names = ", ".join(sorted({d["name"] for d in datasets})[:10]) or "none yet: lorastudio datasets upload FILE"
    typer.echo(f"error: no dataset is named {ref!r}; yours: {names}", err=True)
    raise typer.Exit(1)


def from_preset(client: StudioClient, key: str, dataset: str | None, model: str | None) -> dict[str, Any]:
    """The studio's preset `key` filled in and fitted to the dataset's size (what the designer does)."""
    if not dataset or not model:
        typer.echo("error: --preset needs --dataset and --model (lorastudio datasets list / models list)", err=True)
        raise typer.Exit(1)
    out = client.get(f"/api/presets/{key}", dataset_id=dataset_id(client, dataset), model=model)
    if out["fitted"]:
        typer.echo(f"fitted to the dataset: {', '.join(out['fitted'])}")
    typer.echo(f"plan: {out['plan']}")
    if out["warning"]:
        typer.echo(f"warning: {out['warning']}", err=True)
    return out["spec"]


def from_file(client: StudioClient, path: Path, dataset: str | None, model: str | None) -> dict[str, Any]:
    """A YAML spec (read within the studio's bounds: safe_yaml), with --dataset replacing its data source and
    --model its base model."""
    try:
        spec = safe_yaml.load_file(path, YamlLimits(max_bytes=get_settings().max_spec_yaml_bytes)) or {}
    except YamlRefused as exc:
        typer.echo(f"error: {path} is not a YAML spec the studio reads: {exc}", err=True)
        raise typer.Exit(1) from None
    if not isinstance(spec, dict):
        typer.echo(f"error: {path} is not a YAML mapping (a RunSpec)", err=True)
        raise typer.Exit(1)
    data = dict(spec.get("data") or {})
    if dataset:
        data.pop("path", None)
        data["dataset_id"] = dataset_id(client, dataset)
    elif not data.get("dataset_id"):
        typer.echo(f"error: {path} names no studio dataset (data.dataset_id); pass --dataset NAME_OR_ID", err=True)
        raise typer.Exit(1)
    spec["data"] = data
    if model:
        spec["model"] = {**(spec.get("model") or {}), "base_model": model}
    return spec
