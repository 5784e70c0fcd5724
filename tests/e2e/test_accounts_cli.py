"""`lorastudio users` and `lorastudio tokens` on the studio's database: an account made on the command line can
log in, a token made there drives the API until it is revoked or deleted; deleting an account wants --yes; both
deletes are audited as the host's; the first admin is made (and shown) once."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from app.accounts_cli import first_admin
from app.core import schema
from app.core.config import Settings
from tests.support.accounts import log_in

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]


def _cli(settings: Settings, *args: str, stdin: str = "", **env: str) -> subprocess.CompletedProcess:
    environ = {**os.environ, "DATABASE_URL": settings.resolved_database_url,
               "LORASTUDIO_DATA_DIR": str(settings.data_dir), **env}
    return subprocess.run([sys.executable, "-m", "app.cli", *args], input=stdin, capture_output=True, text=True,
                          env=environ, cwd=ROOT, timeout=120)


def test_users_create_then_log_in_and_tokens_create_then_revoke(app, settings: Settings) -> None:  # noqa: ANN001
    made = _cli(settings, "users", "create", "Carol", "--password-stdin", stdin="a long enough password\n")
    assert made.returncode == 0 and "user 'carol' created" in made.stdout, made.stderr
    again = _cli(settings, "users", "create", "carol", "--password-stdin", stdin="another long password\n")
    assert again.returncode == 1 and "user_exists" in again.stderr
    weak = _cli(settings, "users", "create", "dave", "--password-stdin", stdin="short\n")
    assert weak.returncode == 1 and "weak_password" in weak.stderr
    with TestClient(app) as browser:
        assert log_in(browser, "carol", "a long enough password")
        assert "carol" in browser.get("/account").text
    token = _cli(settings, "tokens", "create", "carol", "--name", "laptop")
    assert token.returncode == 0 and token.stdout.startswith("lst_"), token.stderr  # alone on stdout: scriptable
    headers = {"Authorization": f"Bearer {token.stdout.strip()}"}
    with TestClient(app, headers=headers) as script:
        assert script.get("/api/runs").status_code == 200
        token_id = token.stderr.split("token ", 1)[1].split(" ", 1)[0]
        assert "laptop" in _cli(settings, "tokens", "list", "carol").stdout
        assert _cli(settings, "tokens", "revoke", token_id).returncode == 0
        assert script.get("/api/runs").status_code == 401


def test_the_first_admin_is_made_and_shown_once(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, DATABASE_URL=f"sqlite:///{tmp_path / 'fresh.db'}")
    schema.upgrade(settings.resolved_database_url)
    username, password = first_admin(settings)
    assert username == "admin" and len(password) >= 12
    assert first_admin(settings) is None  # a later start says nothing
    preset = Settings(data_dir=tmp_path, DATABASE_URL=f"sqlite:///{tmp_path / 'preset.db'}",
                      admin_password="set by the operator")
    schema.upgrade(preset.resolved_database_url)
    assert first_admin(preset) == ("admin", None)  # the operator knows it: it is not printed


def test_client_commands_without_a_token_say_how_to_get_one(live_studio) -> None:  # noqa: ANN001
    env = {k: v for k, v in os.environ.items() if k != "LORASTUDIO_TOKEN"}
    result = subprocess.run([sys.executable, "-m", "app.cli", "runs", "show", "1", "--server", live_studio.url],
                            capture_output=True, text=True, env=env, cwd=ROOT, timeout=120)
    assert result.returncode == 1 and "LORASTUDIO_TOKEN" in result.stderr, result.stderr


def test_users_delete_asks_for_yes_then_deletes_and_audits(settings: Settings) -> None:
    made = _cli(settings, "users", "create", "erin", "--password-stdin", stdin="a long enough password\n")
    assert made.returncode == 0, made.stderr
    unconfirmed = _cli(settings, "users", "delete", "erin")
    assert unconfirmed.returncode == 1 and "--yes" in unconfirmed.stderr, unconfirmed.stderr
    assert "erin\t" in _cli(settings, "users", "list").stdout  # refused: still there
    deleted = _cli(settings, "users", "delete", "Erin", "--yes")
    assert deleted.returncode == 0 and "user 'erin' deleted" in deleted.stdout, deleted.stderr
    assert "erin\t" not in _cli(settings, "users", "list").stdout
    audited = _cli(settings, "audit", "list", "--action", "user.delete").stdout
    assert "'erin'" in audited and "\tcli:" in audited, audited
    again = _cli(settings, "users", "delete", "erin", "--yes")
    assert again.returncode == 1 and "user_not_found" in again.stderr


def test_tokens_delete_removes_the_token_from_the_list(app, settings: Settings) -> None:  # noqa: ANN001
    made = _cli(settings, "users", "create", "frank", "--password-stdin", stdin="a long enough password\n")
    assert made.returncode == 0, made.stderr
    token = _cli(settings, "tokens", "create", "frank", "--name", "desktop")
    token_id = token.stderr.split("token ", 1)[1].split(" ", 1)[0]
    deleted = _cli(settings, "tokens", "delete", token_id)  # a live one too: it stops working with its row
    assert deleted.returncode == 0 and f"token {token_id} deleted" in deleted.stdout, deleted.stderr
    assert "desktop" not in _cli(settings, "tokens", "list", "frank").stdout
    with TestClient(app, headers={"Authorization": f"Bearer {token.stdout.strip()}"}) as script:
        assert script.get("/api/runs").status_code == 401
    assert f"token {token_id} 'desktop'" in _cli(settings, "audit", "list", "--action", "token.delete").stdout
    again = _cli(settings, "tokens", "delete", token_id)
    assert again.returncode == 1 and "token_not_found" in again.stderr
