"""Alembic builds the whole schema, matches the models, and is reversible."""

from __future__ import annotations

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from app.core import (
    models,  # noqa: F401 - registers every table on Base.metadata
    schema,
)
from app.core.db import Base


def test_migrations_match_models(resources) -> None:
    with resources.engine.connect() as connection:
        diff = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    assert diff == []
    assert schema.is_current(resources.engine)


def test_downgrade_and_upgrade(tmp_path) -> None:
    url = f"sqlite:///{tmp_path / 'rev.db'}"
    schema.upgrade(url)
    command.downgrade(schema.alembic_config(url), "base")
    schema.upgrade(url)
