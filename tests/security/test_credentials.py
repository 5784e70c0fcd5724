"""Credentials at rest and on the wire: argon2id password hashes, tokens and session ids kept only as sha256,
revocation that takes effect at once, cookie flags, and login answers that tell nothing away."""

from __future__ import annotations

import hashlib

from fastapi.testclient import TestClient
from sqlalchemy import select, text

from app.core.db import session_scope
from app.core.models import ApiToken, User, WebSession
from app.core.services import api_tokens
from tests.support.accounts import Account, create_account, log_in


def _dump(resources, table: str) -> str:  # noqa: ANN001
    """Every value of a table as one string, to look for a secret anywhere in it."""
    with resources.engine.connect() as connection:
        return repr(connection.execute(text(f"SELECT * FROM {table}")).all())


def test_passwords_are_argon2id_hashes(resources, owner: Account) -> None:  # noqa: ANN001
    with session_scope(resources.session_factory) as session:
        stored = session.scalar(select(User.password_hash).where(User.id == owner.id))
    assert stored.startswith("$argon2id$") and "m=65536" in stored  # the library's memory-hard default
    assert owner.password not in _dump(resources, "users")


def test_api_tokens_are_kept_only_as_sha256(resources, owner: Account) -> None:  # noqa: ANN001
    with session_scope(resources.session_factory) as session:
        row = session.scalars(select(ApiToken).where(ApiToken.user_id == owner.id)).first()
        assert row.token_hash == hashlib.sha256(owner.token.encode()).hexdigest()
        assert owner.token.startswith(row.prefix) and len(row.prefix) < 16
    assert owner.token not in _dump(resources, "api_tokens")
    assert owner.token[len("lst_"):] not in _dump(resources, "api_tokens")


def test_session_ids_are_kept_only_as_sha256(app, resources, owner: Account) -> None:  # noqa: ANN001
    with TestClient(app) as client:
        log_in(client, owner.username, owner.password)
        cookie = client.cookies["lorastudio_session"]
    digest = hashlib.sha256(cookie.encode()).hexdigest()
    with session_scope(resources.session_factory) as session:
        assert session.scalars(select(WebSession).where(WebSession.session_hash == digest)).first() is not None
    assert cookie not in _dump(resources, "web_sessions")


def test_a_revoked_token_is_refused_at_once(app, resources) -> None:  # noqa: ANN001
    account = create_account(resources)
    with TestClient(app, headers=account.headers) as client:
        assert client.get("/api/runs").status_code == 200
        with session_scope(resources.session_factory) as session:
            token_id = session.scalars(select(ApiToken.id).where(ApiToken.user_id == account.id)).one()
            api_tokens.revoke_token(session, token_id)
        response = client.get("/api/runs")
    assert response.status_code == 401 and response.json()["error"]["code"] == "invalid_token"
    assert response.json()["error"]["field"] == "Authorization"


def test_a_user_revokes_their_token_on_the_account_page(app, resources) -> None:  # noqa: ANN001
    account = create_account(resources)
    with TestClient(app) as browser:
        csrf = log_in(browser, account.username, account.password)
        made = browser.post("/account/tokens", data={"name": "laptop", "csrf_token": csrf})
        assert made.status_code == 200 and made.headers["cache-control"] == "no-store"
        plaintext = made.text.split('id="new-token-value">', 1)[1].split("<", 1)[0]
        assert plaintext.startswith("lst_") and plaintext not in browser.get("/account").text  # shown once
        with TestClient(app, headers={"Authorization": f"Bearer {plaintext}"}) as script:
            assert script.get("/api/runs").status_code == 200
            with session_scope(resources.session_factory) as session:
                token_id = session.scalars(select(ApiToken.id).where(ApiToken.prefix == plaintext[:12])).one()
            assert browser.post(f"/account/tokens/{token_id}/revoke", data={"csrf_token": csrf},
                                follow_redirects=False).status_code == 303
            assert script.get("/api/runs").status_code == 401


def test_cookie_flags_over_http_and_https(app, owner: Account) -> None:  # noqa: ANN001
    for base_url, secure in (("http://testserver", False), ("https://testserver", True)):
        with TestClient(app, base_url=base_url) as client:
            form = client.get("/login")
            token = form.text.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]
            response = client.post("/login", follow_redirects=False, data={
                "username": owner.username, "password": owner.password, "csrf_token": token})
        cookie = next(c for c in response.headers.get_list("set-cookie") if c.startswith("lorastudio_session="))
        flags = {part.strip().lower() for part in cookie.split(";")[1:]}
        assert {"httponly", "samesite=lax", "path=/"} <= flags, cookie
        assert ("secure" in flags) is secure, (base_url, cookie)


def test_wrong_name_and_wrong_password_get_the_same_answer(app, owner: Account) -> None:  # noqa: ANN001
    answers = []
    with TestClient(app) as client:
        for username, password in ((owner.username, "not the password"), ("nobody-at-all", owner.password)):
            form = client.get("/login")
            token = form.text.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]
            response = client.post("/login", data={"username": username, "password": password, "csrf_token": token})
            answers.append((response.status_code, "Wrong username or password." in response.text))
            assert "lorastudio_session" not in client.cookies
    assert answers == [(401, True), (401, True)]


def test_usernames_are_case_insensitive_and_the_next_page_stays_on_this_site(app, owner: Account) -> None:  # noqa: ANN001
    for target, expected in (("//evil.example/x", "/"), ("https://evil.example", "/"), ("/\\evil.example", "/"),
                             ("/runs/compare?ids=1", "/runs/compare?ids=1")):
        with TestClient(app) as client:
            form = client.get("/login")
            token = form.text.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]
            response = client.post("/login", follow_redirects=False, data={
                "username": owner.username.upper(), "password": owner.password, "csrf_token": token, "next": target})
        assert response.status_code == 303 and response.headers["location"] == expected, target


def test_changing_the_password_signs_out_other_browsers(app, resources) -> None:  # noqa: ANN001
    account = create_account(resources)
    with TestClient(app) as this, TestClient(app) as other:
        csrf = log_in(this, account.username, account.password)
        log_in(other, account.username, account.password)
        wrong = this.post("/account/password", data={"csrf_token": csrf, "current_password": "nope",
                                                      "new_password": "a new long password"})
        assert wrong.status_code == 422 and "The current password is not right." in wrong.text
        short = this.post("/account/password", data={"csrf_token": csrf, "current_password": account.password,
                                                      "new_password": "short"})
        assert short.status_code == 422 and "8 to 256 characters" in short.text
        changed = this.post("/account/password", data={"csrf_token": csrf, "current_password": account.password,
                                                        "new_password": "a new long password"})
        assert changed.status_code == 200 and "Password changed" in changed.text  # this browser stays in
        assert other.get("/account", follow_redirects=False).status_code == 303  # the other one is out
        assert log_in(other, account.username, "a new long password")


def test_only_admins_register_a_model_folder_on_the_studios_machines(app, owner: Account, admin: Account,
                                                                     tmp_path) -> None:  # noqa: ANN001
    (tmp_path / "config.json").write_text("{}")
    (tmp_path / "model.safetensors").write_bytes(b"")
    with TestClient(app, headers=owner.headers) as client:
        refused = client.post("/api/models", json={"name": "mine", "ref": str(tmp_path)})
        assert refused.status_code == 403 and refused.json()["error"]["field"] == "ref"
        assert client.post("/api/models", json={"ref": "/etc"}).status_code == 403  # no hint of what exists
    with TestClient(app, headers=admin.headers) as client:
        registered = client.post("/api/models", json={"name": f"folder-{tmp_path.name}", "ref": str(tmp_path)})
        assert registered.status_code == 201


def test_remote_code_runs_only_for_a_model_an_admin_allowed(app, owner: Account, admin: Account,
                                                            ids: dict) -> None:  # noqa: ANN001
    spec = {"model": {"base_model": ids["model"], "trust_remote_code": True},
            "data": {"dataset_id": ids["dataset_id"]}, "training": {"max_steps": 1}}
    with TestClient(app, headers=admin.headers) as client:
        refused = client.post("/api/runs", json=spec)  # the model was registered without the permission
        assert refused.status_code == 422, refused.text
        assert refused.json()["error"]["field"] == "model.trust_remote_code"
        assert "admin" in refused.json()["error"]["message"]
    with TestClient(app, headers=owner.headers) as client:
        asked = client.post("/api/models", json={"name": "hub-code", "ref": "org/has-code", "trust_remote_code": True})
        assert asked.status_code == 403 and asked.json()["error"]["field"] == "trust_remote_code"
    with TestClient(app, headers=admin.headers) as client:
        allowed = client.post("/api/models", json={"name": f"code-{ids['model']}", "ref": "org/has-code",
                                                   "trust_remote_code": True})
        assert allowed.status_code == 201 and allowed.json()["trust_remote_code"] is True
        spec["model"]["base_model"] = allowed.json()["name"]
        spec["data"]["dataset_id"] = ids["dataset_id"]
        assert client.post("/api/runs", json=spec).status_code == 201


def test_a_token_use_is_recorded_when_the_request_commits_not_before(resources) -> None:  # noqa: ANN001
    account = create_account(resources)
    with session_scope(resources.session_factory) as session:
        user = api_tokens.user_for_token(session, account.token)
        assert user is not None and user.id == account.id
        # Nothing written yet: an UPDATE flushed here would hold SQLite's write lock for the rest of the request.
        assert not session.new and not session.dirty
        assert session.scalar(select(ApiToken.last_used_at).where(ApiToken.user_id == account.id)) is None
    with session_scope(resources.session_factory) as session:
        assert session.scalar(select(ApiToken.last_used_at).where(ApiToken.user_id == account.id)) is not None
