"""The audit log: written by the services in the action's own unit of work (token made and revoked, password
changed, logout, a model folder registered, admin rights given by the CLI), readable by admins only."""

from __future__ import annotations

import json
from pathlib import Path

from fastapi.testclient import TestClient
from sqlalchemy import select

from app.core.db import session_scope
from app.core.models import ApiToken, AuditEntry, User
from app.core.services import accounts, audit, models
from tests.support.accounts import CSRF_INPUT, Account, create_account, log_in


def _admin_view(app, admin: Account, **query: str) -> list[dict]:  # noqa: ANN001
    with TestClient(app, headers=admin.headers) as client:
        response = client.get("/api/audit", params=query)
    assert response.status_code == 200, response.text
    return response.json()


def test_the_accounts_own_actions_are_audited_under_it_and_its_client(app, admin: Account, resources) -> None:  # noqa: ANN001
    person = create_account(resources)
    with TestClient(app, follow_redirects=False) as browser:
        csrf = log_in(browser, person.username, person.password)
        assert browser.post("/account/tokens", data={"name": "laptop", "csrf_token": csrf}).status_code == 200
        with session_scope(resources.session_factory) as session:
            token_id = session.scalars(select(ApiToken.id).where(ApiToken.user_id == person.id, ApiToken.name ==
                                                                 "laptop")).one()
        assert browser.post(f"/account/tokens/{token_id}/revoke", data={"csrf_token": csrf}).status_code == 303
        assert browser.post("/account/password", data={"current_password": person.password, "csrf_token": csrf,
                                                       "new_password": "another long password"}).status_code == 303
        csrf = CSRF_INPUT.search(browser.get("/account").text).group(1)
        assert browser.post("/logout", data={"csrf_token": csrf}).status_code == 303
    mine = [e for e in _admin_view(app, admin) if e["actor_user_id"] == person.id]
    assert [e["action"] for e in mine] == ["logout", "user.set_password", "token.revoke", "token.create",
                                           "login.success"]
    assert {e["client"] for e in mine} == {"testclient"}
    assert mine[3]["details"]["name"] == "laptop" and mine[3]["target"] == f"token {token_id} of {person.username}"
    assert _admin_view(app, admin, action="token.revoke", limit="1")[0]["target"] == f"token {token_id}"


def test_only_admins_read_the_audit_log(app, resources) -> None:  # noqa: ANN001
    person = create_account(resources)
    with TestClient(app, headers=person.headers) as client:
        response = client.get("/api/audit")
    assert response.status_code == 403 and response.json()["error"]["code"] == "admin_only"


def test_cli_actions_are_audited_as_the_hosts_and_outlive_the_account(resources, tmp_path: Path) -> None:  # noqa: ANN001
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"hidden_size": 8}))
    (folder / "model.safetensors").write_bytes(b"")
    with session_scope(resources.session_factory) as session:
        audit.set_origin(session, audit.Origin.cli())
        person = accounts.create_user(session, "audited-person", "long enough password")
        accounts.set_admin(session, person, True)
        models.register_model(session, "audited-model", str(folder))
        signed_in = audit.record(session, "login.success", person.username, actor=person)
        entries = session.scalars(select(AuditEntry).order_by(AuditEntry.id.desc()).limit(4)).all()
        assert [(e.action, e.target, e.client) for e in reversed(entries[1:])] == [
            ("user.create", "audited-person", "cli"), ("user.set_admin", "audited-person", "cli"),
            ("model.register", "audited-model", "cli")]
        assert entries[1].details == {"source": "local", "ref": str(folder.resolve()), "trust_remote_code": False}
        assert entries[1].actor.startswith("cli:") and entries[1].actor_user_id is None
        session.delete(session.get(User, person.id))
        session.flush()
        session.refresh(signed_in)
        assert signed_in.actor_user_id is None and signed_in.actor == "audited-person"


def test_an_action_filter_that_names_no_action_is_a_422_naming_it(client) -> None:  # noqa: ANN001
    # A NUL byte reached PostgreSQL as a text parameter (a 500 found by schemathesis); actions are dotted words.
    for bad in ("\x00", "login failure", "x" * 65):
        response = client.get("/api/audit", params={"action": bad})
        assert response.status_code == 422, response.text
        assert response.json()["error"]["field"] == "action"
