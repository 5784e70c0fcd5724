"""Bring a database to the newest schema with Alembic (the only way tables are made), then backfill what a
migration cannot compute without the app's code: the canonical rows of datasets stored before revision 0006."""

from __future__ import annotations

import logging
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Engine

from app.core.db import make_engine, make_session_factory, session_scope
from app.core.errors import StudioError
from app.core.services import datasets as dataset_service

ROOT = Path(__file__).resolve().parents[2]
log = logging.getLogger(__name__)


def alembic_config(url: str) -> Config:
    """An Alembic config for the project's migrations and the given URL."""
    config = Config(str(ROOT / "alembic.ini"))
    config.set_main_option("script_location", str(ROOT / "migrations"))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def upgrade(url: str) -> None:
    """Apply every pending migration, then backfill (`lorastudio migrate` and every start come through here)."""
    if url.startswith("sqlite:///"):
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    command.upgrade(alembic_config(url), "head")
    backfill(url)


def backfill(url: str) -> int:
    """Store the canonical rows of datasets that lack them, one transaction each; returns how many were done."""
    engine = make_engine(url)
    try:
        factory = make_session_factory(engine)
        with session_scope(factory) as session:
            pending = dataset_service.datasets_to_backfill(session)
        done = 0
        for dataset_id in pending:
            try:
                with session_scope(factory) as session:
                    done += dataset_service.backfill_canonical(session, dataset_id)
            except StudioError as error:
                # A file today's rules refuse must not stop the studio from starting; its page says why instead.
                log.warning("dataset %s: no canonical rows (%s: %s)", dataset_id, error.code, error.message)
        return done
    finally:
        engine.dispose()


def is_current(engine: Engine) -> bool:
    """True when the database is at the newest revision."""
    head = ScriptDirectory.from_config(alembic_config(str(engine.url))).get_current_head()
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision() == head
