"""Management commands say which database they use and never make one by accident: a shell without the studio's
LORASTUDIO_DATA_DIR is told how to find it instead of getting a second, empty studio."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from app.cli_database import problem
from app.core import schema
from app.core.config import Settings
from app.core.db import session_scope
from app.core.repositories import catalog
from app.core.resources import Resources

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]


def _cli(data_dir: Path, *args: str, stdin: str = "", **env: str) -> subprocess.CompletedProcess:
    environ = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "LORASTUDIO_DATA_DIR")}
    environ |= {"LORASTUDIO_DATA_DIR": str(data_dir), **env}
    return subprocess.run([sys.executable, "-m", "app.cli", *args], capture_output=True, text=True, env=environ,
                          cwd=ROOT, timeout=120, input=stdin)


def test_a_data_dir_without_a_studio_is_refused_not_created(tmp_path: Path) -> None:
    data_dir = tmp_path / "elsewhere"
    for args in (["users", "list"], ["tokens", "create", "admin"]):
        result = _cli(data_dir, *args)
        assert result.returncode == 1, result
        assert result.stderr.startswith(f"database: sqlite:///{data_dir / 'studio.db'} (from LORASTUDIO_DATA_DIR)")
        assert f"There is no studio database at {data_dir / 'studio.db'}" in result.stderr
        assert "LORASTUDIO_DATA_DIR" in result.stderr and "lorastudio migrate" in result.stderr
        assert "There is no user" not in result.stderr and not result.stdout
    assert not data_dir.exists()  # nothing was made on the way


def test_migrate_makes_the_database_on_purpose_then_commands_use_it(tmp_path: Path) -> None:
    made = _cli(tmp_path, "migrate")
    assert made.returncode == 0 and (tmp_path / "studio.db").is_file(), made.stderr
    assert made.stderr.startswith(f"database: sqlite:///{tmp_path / 'studio.db'}")
    created = _cli(tmp_path, "users", "create", "ann", "--password-stdin", stdin="a long enough password\n")
    assert created.returncode == 0 and "user 'ann' created" in created.stdout, created.stderr
    listed = _cli(tmp_path, "users", "list")
    assert listed.returncode == 0 and listed.stdout.startswith("ann\t"), listed.stderr
    assert listed.stderr.startswith("database: ")


def test_an_empty_file_and_an_unreachable_server_are_named(tmp_path: Path) -> None:
    (tmp_path / "studio.db").write_bytes(b"")
    empty = _cli(tmp_path, "tokens", "list")
    assert empty.returncode == 1 and "has no studio tables" in empty.stderr, empty.stderr
    assert (tmp_path / "studio.db").stat().st_size == 0  # not migrated behind the user's back
    url = "postgresql+psycopg://someone:hunter2@127.0.0.1:1/studio"
    gone = _cli(tmp_path, "users", "list", DATABASE_URL=url)
    assert gone.returncode == 1 and "cannot be opened" in gone.stderr and "DATABASE_URL" in gone.stderr
    assert "hunter2" not in gone.stderr and "someone:***@127.0.0.1:1/studio" in gone.stderr


def test_demo_model_refuses_before_converting_where_no_studio_is(tmp_path: Path) -> None:
    result = _cli(tmp_path / "fresh", "demo-model")
    assert result.returncode == 1 and "There is no studio database" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr and not (tmp_path / "fresh").exists()


def test_demo_model_registers_in_the_studio_made_by_migrate_or_up(tmp_path: Path) -> None:
    assert _cli(tmp_path, "migrate").returncode == 0  # what `up` does first on a fresh data folder
    result = _cli(tmp_path, "demo-model")
    assert result.returncode == 0 and "registered as 'SmolLM2-135M-Instruct'" in result.stdout, result.stderr[-3000:]
    res = Resources(Settings(data_dir=tmp_path))
    with session_scope(res.session_factory) as session:
        model = catalog.find_model(session, "SmolLM2-135M-Instruct")
        assert model is not None and model.ref == str(tmp_path / "models" / "SmolLM2-135M-Instruct")
    res.engine.dispose()


def test_problem_is_none_only_for_a_migrated_database(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'studio.db'}"
    assert "no studio database" in problem(url) and not (tmp_path / "studio.db").exists()
    schema.upgrade(url)
    assert problem(url) is None
