"""Shared fixtures: a migrated database (SQLite by default, PostgreSQL with LORASTUDIO_TEST_DB=postgresql),
the real Redis, an app client signed in as the test session's admin, and a tiny model built locally.

Every test that uses the database (anything built on `resources`: `client`, `session`, `ids`, `app`, …) runs
in a transaction rolled back at its end (tests/support/database.py), unless it is marked `committed`: the
end-to-end, browser and reliability tests are, by folder, since other processes must see what they write.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from app.core import schema
from app.core.config import Settings
from app.core.resources import Resources
from tests.support.accounts import Account, create_account
from tests.support.database import rolled_back
from tests.support.requirements import require

pytest_plugins = ["tests.support.studio", "tests.support.demo_model", "tests.support.generation_fixtures"]

PG_ADMIN_URL = os.environ.get("LORASTUDIO_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("LORASTUDIO_TEST_REDIS", "redis://127.0.0.1:6379/0")
SHARED_DATASETS = Path(__file__).resolve().parents[2] / "shared" / "datasets"
# Their tests run real processes (web, workers, writers, a browser) that must see committed rows.
COMMITTED_FOLDERS = ("e2e", "browser", "reliability")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark the tests of COMMITTED_FOLDERS `committed`: they write for real instead of in a rolled-back transaction."""
    tests = Path(__file__).resolve().parent
    for item in items:
        path = item.path.resolve()
        if path.is_relative_to(tests) and path.relative_to(tests).parts[0] in COMMITTED_FOLDERS:
            item.add_marker(pytest.mark.committed)


def _create_pg_database() -> tuple[str, str]:
    """A fresh PostgreSQL database for this test session (dropped at the end)."""
    name = f"lorastudio_test_{uuid.uuid4().hex[:10]}"
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}", name


def _drop_pg_database(name: str) -> None:
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(scope="session")
def settings(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    """Studio settings for the test session: temp data dir, migrated DB, own Celery queue on the real Redis."""
    data_dir = tmp_path_factory.mktemp("studio-data")
    pg_name = None
    if os.environ.get("LORASTUDIO_TEST_DB", "sqlite") == "postgresql":
        url, pg_name = _create_pg_database()
    else:
        url = f"sqlite:///{data_dir / 'studio.db'}"
    schema.upgrade(url)
    yield Settings(
        data_dir=data_dir, DATABASE_URL=url, REDIS_URL=REDIS_URL, queue=f"test-{uuid.uuid4().hex[:8]}",
        generation_namespace=f"lorastudio:gen:test-{uuid.uuid4().hex[:8]}",
        cancel_grace_s=20.0,
    )
    if pg_name:
        _drop_pg_database(pg_name)


@pytest.fixture(scope="session")
def resources(settings: Settings) -> Resources:
    """Engine, sessions and Redis for the test session."""
    return Resources(settings)


@pytest.fixture(scope="session")
def app(resources: Resources):  # noqa: ANN201
    """The FastAPI app on the test resources."""
    from app.main import create_app

    return create_app(resources)


@pytest.fixture(scope="session")
def admin(resources: Resources) -> Account:
    """The test session's admin (as `lorastudio up` makes on a fresh studio), with an API token."""
    return create_account(resources, "test-admin", admin=True)


@pytest.fixture(scope="module")
def member(resources: Resources) -> Account:
    """An ordinary user (one per test module that asks for one)."""
    return create_account(resources)


@pytest.fixture
def as_member(app, member: Account) -> Iterator:  # noqa: ANN001
    """An HTTP client for the app (in process), signed in as `member`."""
    from fastapi.testclient import TestClient

    with TestClient(app, headers=member.headers) as test_client:
        yield test_client


@pytest.fixture(autouse=True)
def _database_transaction(request: pytest.FixtureRequest) -> Iterator[None]:
    """A test that uses the database runs in one transaction, rolled back at its end, unless marked `committed`.

    Session-scoped fixtures (the admin, tests/security's owners) were made before, committed, and stay.
    """
    if "resources" not in request.fixturenames or request.node.get_closest_marker("committed"):
        yield
        return
    request.getfixturevalue("admin")  # every test may sign in as the admin: create it outside the transaction
    with rolled_back(request.getfixturevalue("resources")):
        yield


@pytest.fixture
def client(app, admin: Account) -> Iterator:  # noqa: ANN001
    """An HTTP client for the app (in process), signed in with the admin's API token: it sees everything."""
    from fastapi.testclient import TestClient

    with TestClient(app, headers=admin.headers) as test_client:
        yield test_client


@pytest.fixture
def session(resources: Resources) -> Iterator:
    """A session whose work is rolled back after the test (with the test's transaction, unless `committed`)."""
    db_session = resources.session_factory()
    try:
        yield db_session
    finally:
        db_session.rollback()
        db_session.close()


@pytest.fixture
def ids(client, tmp_path: Path) -> dict:
    """A registered local model folder (config.json, empty weights: never opened) and an uploaded chat dataset."""
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    (folder / "model.safetensors").write_bytes(b"")  # registration wants safetensors; the web never opens it
    model = client.post("/api/models", json={"name": f"m-{tmp_path.name}", "ref": str(folder)})
    assert model.status_code == 201, model.text
    row = {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}
    dataset = client.post("/api/datasets", files={"file": ("c.jsonl", json.dumps(row).encode())})
    assert dataset.status_code == 201, dataset.text
    return {"model": model.json()["name"], "model_id": model.json()["id"], "dataset_id": dataset.json()["id"]}


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random Llama-style model and tokenizer, saved locally (seconds, no download)."""
    from tests.support.tiny_model import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny-model"))


@pytest.fixture(scope="session")
def shared_datasets() -> Path:
    """../shared/datasets (skipped where absent, a failure in CI)."""
    require(SHARED_DATASETS.is_dir(), f"{SHARED_DATASETS} is absent: put the shared demo datasets beside the "
            "repository (../shared/datasets)")
    return SHARED_DATASETS
