"""Which database a management command works on: said on every run, and refused when it is not a studio's, so a
shell without the studio's LORASTUDIO_DATA_DIR does not quietly make a second, empty one beside it."""

from __future__ import annotations

import os
from pathlib import Path

import typer
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError

from app.core.config import Settings

FIX = ("Point this shell at the running studio's database (set LORASTUDIO_DATA_DIR to the data folder `lorastudio "
       "up` printed, or DATABASE_URL), or run `lorastudio migrate` to create a new database here.")
UNREACHABLE = "Check that the database server is running and that DATABASE_URL names the studio's database."


def redact(url: str) -> str:
    """The URL with its password hidden, fit to print."""
    return make_url(url).render_as_string(hide_password=True)


def announce(settings: Settings) -> str:
    """Say which database this command uses and where that choice came from (on stderr, so stdout stays
    scriptable); returns its URL."""
    url = settings.resolved_database_url
    if settings.database_url:
        origin = "from DATABASE_URL"
    elif "LORASTUDIO_DATA_DIR" in os.environ:
        origin = "from LORASTUDIO_DATA_DIR"
    else:
        origin = "the default data folder; LORASTUDIO_DATA_DIR is not set"
    typer.echo(f"database: {redact(url)} ({origin})", err=True)
    return url


def sqlite_path(url: str) -> Path | None:
    """The file of a SQLite URL; None for another database or an in-memory one."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return None
    return Path(parsed.database).absolute()


def problem(url: str) -> str | None:
    """Why url is not a studio's database (no file, unreachable, no schema); None when it is one.

    A missing SQLite file is never opened, since opening it would create it."""
    path = sqlite_path(url)
    if path is not None and not path.is_file():
        return f"There is no studio database at {path}. {FIX}"
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            revision = MigrationContext.configure(connection).get_current_revision()
    except SQLAlchemyError as exc:
        reason = str(exc.orig if getattr(exc, "orig", None) else exc).strip().splitlines()[0]
        return f"The database {path or redact(url)} cannot be opened ({reason}). {UNREACHABLE if path is None else FIX}"
    finally:
        engine.dispose()
    if revision is None:
        return f"The database {path or redact(url)} has no studio tables. {FIX}"
    return None


def require_studio_database(settings: Settings) -> str:
    """The URL of the studio database this command works on, once said; exits 1 with what to do if there is none."""
    url = announce(settings)
    trouble = problem(url)
    if trouble:
        typer.echo(f"error: {trouble}", err=True)
        raise typer.Exit(1)
    return url
