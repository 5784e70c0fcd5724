"""Deleting runs, datasets, models, users and API tokens: refusals while something needs them, everything that hangs
from a run going with it, shared blobs kept while used and collected after, another user's objects not found, and
every delete in the audit log under who did it."""

from __future__ import annotations

import json
import threading
import uuid

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from app.core import blobs
from app.core.db import session_scope
from app.core.errors import StudioError
from app.core.models import (
    ApiToken,
    Artifact,
    AuditEntry,
    Blob,
    BlobChunk,
    Dataset,
    DatasetAnalysis,
    MetricPoint,
    RunStatus,
    TimelineEntry,
    User,
)
from app.core.resources import Resources
from app.core.services import api_tokens, deletion
from app.core.services import runs as run_service
from tests.support.accounts import Account, create_account, log_in
from worker.planning.reports import Metric

CHAT = {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}


def _count(session, model, *where) -> int:  # noqa: ANN001
    session.rollback()  # read what the app committed
    return session.scalar(select(func.count()).select_from(model).where(*where))


def _blob(session, payload: bytes) -> int:  # noqa: ANN001
    return blobs.put_stream(session, [payload], "application/octet-stream").id


def _run(client: TestClient, ids: dict) -> int:
    response = client.post("/api/runs", json={"model": {"base_model": ids["model"]},
                                              "data": {"dataset_id": ids["dataset_id"]}})
    assert response.status_code == 201, response.text
    return response.json()["id"]


def _finished_run(client: TestClient, session, ids: dict, files: dict[str, bytes]) -> int:  # noqa: ANN001
    """A run taken through a worker's steps: metrics, a checkpoint and adapter files, succeeded."""
    run_id = _run(client, ids)
    assert run_service.claim_run(session, run_id, "test-worker")
    run_service.record_metrics(session, run_id, [Metric(step=1, loss=2.0), Metric(step=2, loss=1.0)])
    for name, payload in files.items():
        kind = "checkpoint" if name.startswith("step-") else "adapter"
        blob_id = _blob(session, payload)
        session.add(Artifact(run_id=run_id, kind=kind, name=name, blob_id=blob_id, size=len(payload)))
    assert run_service.finish_run(session, run_id, RunStatus.succeeded, {"steps": 2})
    session.commit()
    return run_id


def test_deleting_a_run_removes_all_it_stored_and_only_its_own_blobs(client: TestClient, session, ids: dict) -> None:  # noqa: ANN001
    shared = b"the same tokenizer file in both runs"
    kept = _finished_run(client, session, ids, {"tokenizer.json": shared})
    gone = _finished_run(client, session, ids, {"tokenizer.json": shared, "adapter_model.safetensors": b"weights",
                                                "step-000002/adapter_model.safetensors": b"checkpoint"})
    blob_ids = set(session.scalars(select(Artifact.blob_id).where(Artifact.run_id == gone)))
    assert len(blob_ids) == 3
    assert client.delete(f"/api/runs/{gone}").status_code == 204
    assert client.get(f"/api/runs/{gone}").status_code == 404
    for model in (MetricPoint, TimelineEntry, Artifact):
        assert _count(session, model, model.run_id == gone) == 0, model
    left = set(session.scalars(select(Blob.id).where(Blob.id.in_(blob_ids))))
    assert left == set(session.scalars(select(Artifact.blob_id).where(Artifact.run_id == kept)))  # the shared one
    assert _count(session, BlobChunk, BlobChunk.blob_id.in_(blob_ids - left)) == 0
    assert client.get(f"/api/runs/{kept}/metrics").json()  # the other run is untouched


def test_a_queued_or_running_run_must_be_cancelled_first(client: TestClient, session, ids: dict) -> None:  # noqa: ANN001
    run_id = _run(client, ids)
    refused = client.delete(f"/api/runs/{run_id}")
    assert refused.status_code == 409 and refused.json()["error"]["code"] == "run_active"
    assert "cancel it first" in refused.json()["error"]["message"]
    assert run_service.claim_run(session, run_id, "test-worker")
    session.commit()
    assert client.delete(f"/api/runs/{run_id}").status_code == 409  # running
    assert client.post(f"/api/runs/{run_id}/cancel").status_code == 200
    assert client.delete(f"/api/runs/{run_id}").status_code == 409  # asked to stop, still running
    assert run_service.finish_run(session, run_id, RunStatus.cancelled)
    session.commit()
    assert client.delete(f"/api/runs/{run_id}").status_code == 204


def test_a_dataset_a_run_uses_is_refused_naming_the_runs(client: TestClient, session, ids: dict) -> None:  # noqa: ANN001
    run_id = _run(client, ids)
    url = f"/api/datasets/{ids['dataset_id']}"
    refused = client.delete(url)
    assert refused.status_code == 409, refused.text
    assert refused.json()["error"]["code"] == "dataset_in_use" and f"run {run_id}" in refused.json()["error"]["message"]
    assert client.post(f"/api/runs/{run_id}/cancel").json()["status"] == "cancelled"
    finished = client.delete(url)
    assert finished.status_code == 409 and finished.json()["error"]["code"] == "dataset_has_runs"
    assert client.delete(f"/api/runs/{run_id}").status_code == 204
    assert client.delete(url).status_code == 204
    assert client.get(url).status_code == 404


def test_deleting_a_dataset_collects_its_blobs_unless_another_dataset_shares_them(client: TestClient,  # noqa: ANN001
                                                                                  session) -> None:
    body = json.dumps(CHAT).encode() + b"\n"
    first, second = (client.post("/api/datasets", files={"file": ("c.jsonl", body)}).json()["id"] for _ in range(2))
    session.rollback()
    stored = session.get(Dataset, first)
    blob_ids = {stored.blob_id, stored.canonical_blob_id, stored.canonical_index_blob_id}
    session.add(DatasetAnalysis(dataset_id=first, base_model_id=_any_model(client), max_seq_length=64,
                                status="succeeded", result={}))
    session.commit()
    assert client.delete(f"/api/datasets/{first}").status_code == 204
    assert _count(session, Blob, Blob.id.in_(blob_ids)) == len(blob_ids)  # the second dataset has the same bytes
    assert _count(session, DatasetAnalysis, DatasetAnalysis.dataset_id == first) == 0
    assert client.delete(f"/api/datasets/{second}").status_code == 204
    assert _count(session, Blob, Blob.id.in_(blob_ids)) == 0
    assert _count(session, BlobChunk, BlobChunk.blob_id.in_(blob_ids)) == 0


def _any_model(client: TestClient) -> int:
    response = client.post("/api/models", json={"ref": "org/delete-test-model"})
    return response.json()["id"]


def test_a_running_analysis_holds_its_dataset(client: TestClient, session) -> None:  # noqa: ANN001
    dataset_id = client.post("/api/datasets", files={"file": ("c.jsonl", json.dumps(CHAT).encode())}).json()["id"]
    session.add(DatasetAnalysis(dataset_id=dataset_id, base_model_id=_any_model(client), max_seq_length=64,
                                status="running", result={}))
    session.commit()
    refused = client.delete(f"/api/datasets/{dataset_id}")
    assert refused.status_code == 409 and "analys" in refused.json()["error"]["message"]


def test_models_are_deleted_by_admins_when_no_run_uses_them(app, client: TestClient, ids: dict,  # noqa: ANN001
                                                            member: Account) -> None:
    unused = client.post("/api/models", json={"ref": "org/unused-model"}).json()["id"]
    with TestClient(app, headers=member.headers) as as_member:
        assert as_member.delete(f"/api/models/{unused}").status_code == 404  # only admins manage the catalog
    run_id = _run(client, ids)
    refused = client.delete(f"/api/models/{ids['model_id']}")
    assert refused.status_code == 409 and f"run {run_id}" in refused.json()["error"]["message"]
    assert client.delete(f"/api/models/{unused}").status_code == 204
    assert "org/unused-model" not in client.get("/api/models").text
    assert client.delete(f"/api/models/{unused}").status_code == 404


def test_another_users_objects_cannot_be_deleted(app, client: TestClient, session, ids: dict,  # noqa: ANN001
                                                 member: Account) -> None:
    run_id = _finished_run(client, session, ids, {"adapter_model.safetensors": b"w"})
    with TestClient(app, headers=member.headers) as as_member:
        for url in (f"/api/runs/{run_id}", f"/api/datasets/{ids['dataset_id']}"):
            response = as_member.delete(url)
            assert response.status_code == 404, (url, response.text)
    assert client.get(f"/api/runs/{run_id}").status_code == 200


def test_the_pages_delete_with_the_csrf_token(app, member: Account) -> None:  # noqa: ANN001
    body = json.dumps(CHAT).encode()
    with TestClient(app) as browser:
        csrf = log_in(browser, member.username, member.password)
        dataset_id = browser.post("/api/datasets", files={"file": ("c.jsonl", body)},
                                  headers={"X-CSRF-Token": csrf}).json()["id"]
        assert f'action="/datasets/{dataset_id}/delete"' in browser.get(f"/datasets/{dataset_id}").text
        forged = browser.post(f"/datasets/{dataset_id}/delete", follow_redirects=False)
        assert forged.status_code == 403
        done = browser.post(f"/datasets/{dataset_id}/delete", data={"csrf_token": csrf}, follow_redirects=False)
        assert (done.status_code, done.headers["location"]) == (303, "/datasets")
        assert browser.get(f"/datasets/{dataset_id}").status_code == 404
        assert browser.post(f"/runs/{2**31 - 1}/delete", data={"csrf_token": csrf}).status_code == 404


def test_deleting_a_user_keeps_their_work_for_admins(session, resources: Resources) -> None:  # noqa: ANN001
    admin = session.scalars(select(User).where(User.is_admin.is_(True))).first()
    leaving = create_account(resources)
    member = session.get(User, leaving.id)
    dataset = Dataset(name="theirs", filename="t.jsonl", file_type="jsonl", format="text", row_count=1,
                      size_bytes=1, sha256="0" * 64, blob_id=_blob(session, b"x"), owner_id=member.id)
    session.add(dataset)
    session.flush()
    with pytest.raises(StudioError) as refused:
        deletion.delete_user(session, admin.id, actor=member)
    assert refused.value.kind == "not_found"  # a plain user learns no account ids
    with pytest.raises(StudioError, match="your own account"):
        deletion.delete_user(session, admin.id, actor=admin)
    deletion.delete_user(session, member.id, actor=admin)
    session.refresh(dataset)
    assert dataset.owner_id is None and session.get(User, leaving.id) is None


def test_the_last_admin_cannot_be_deleted(session, resources: Resources) -> None:  # noqa: ANN001
    last = session.get(User, create_account(resources, admin=True).id)
    for admin in session.scalars(select(User).where(User.is_admin.is_(True), User.id != last.id)).all():
        admin.is_admin = False  # rolled back with the test
    session.flush()
    asking = User(id=-1, username="asking", password_hash="", is_admin=True)  # not stored: only its flags are read
    with pytest.raises(StudioError, match="last admin"):
        deletion.delete_user(session, last.id, actor=asking)
    with pytest.raises(StudioError, match="last admin"):  # nor by the host's CLI (`lorastudio users delete`)
        deletion.delete_user(session, last.id, actor=None)


def _audited(session, action: str, target: str) -> list[int | None]:  # noqa: ANN001
    """Who (user id) the app's committed entries of this action on this target name: ids are unique per object, so
    entries that committed tests left in the session's database do not count."""
    session.rollback()
    where = (AuditEntry.action == action, AuditEntry.target == target)
    return list(session.scalars(select(AuditEntry.actor_user_id).where(*where).order_by(AuditEntry.id)))


def test_admins_delete_accounts_through_the_api(app, client: TestClient, session, resources: Resources,  # noqa: ANN001
                                                admin: Account, member: Account) -> None:
    leaving = create_account(resources)
    with TestClient(app, headers=member.headers) as as_member:
        refused = as_member.delete(f"/api/users/{leaving.id}")  # not an admin: no account is theirs to find
        assert refused.status_code == 404 and "only admins" in refused.json()["error"]["message"]
    own = client.delete(f"/api/users/{admin.id}")
    assert own.status_code == 409 and own.json()["error"]["code"] == "cannot_delete_self"
    assert client.delete(f"/api/users/{leaving.id}").status_code == 204
    assert _count(session, User, User.id == leaving.id) == 0
    assert _count(session, ApiToken, ApiToken.user_id == leaving.id) == 0  # their tokens went with them
    with TestClient(app, headers=leaving.headers) as as_leaving:
        assert as_leaving.get("/api/runs").status_code == 401
    assert client.delete(f"/api/users/{leaving.id}").status_code == 404
    assert _audited(session, "user.delete", f"user {leaving.id} '{leaving.username}'") == [admin.id]


def test_the_api_never_deletes_the_last_admin(client: TestClient, session, admin: Account) -> None:  # noqa: ANN001
    """With one admin left, the only admin who can ask is that one: the self rule answers first, still a 409."""
    for other in session.scalars(select(User).where(User.is_admin.is_(True), User.id != admin.id)).all():
        other.is_admin = False  # rolled back with the test
    session.commit()
    refused = client.delete(f"/api/users/{admin.id}")
    assert refused.status_code == 409 and "another admin" in refused.json()["error"]["message"]
    assert _count(session, User, User.id == admin.id) == 1


def test_a_user_deletes_their_own_tokens_and_finds_no_one_elses(app, session, resources: Resources,  # noqa: ANN001
                                                                member: Account) -> None:
    other = create_account(resources)
    others_token = session.scalars(select(ApiToken.id).where(ApiToken.user_id == other.id)).one()
    with TestClient(app, headers=member.headers) as as_member:
        assert as_member.post("/account/tokens", data={"name": "old laptop"}).status_code == 200
        session.rollback()
        token_id = session.scalars(select(ApiToken.id).where(ApiToken.user_id == member.id,
                                                             ApiToken.name == "old laptop")).one()
        assert as_member.post(f"/account/tokens/{token_id}/revoke", follow_redirects=False).status_code == 303
        assert f'action="/account/tokens/{token_id}/delete"' in as_member.get("/account").text  # offered once revoked
        gone = as_member.post(f"/account/tokens/{token_id}/delete", follow_redirects=False)
        assert (gone.status_code, gone.headers["location"]) == (303, "/account")
        assert "old laptop" not in as_member.get("/account").text
        assert as_member.post(f"/account/tokens/{others_token}/delete").status_code == 404
    session.rollback()
    assert token_id not in [t.id for t in api_tokens.list_tokens(session, session.get(User, member.id))]
    assert _count(session, ApiToken, ApiToken.id == others_token) == 1
    assert _audited(session, "token.delete", f"token {token_id} 'old laptop'") == [member.id]


def test_every_delete_is_audited_under_who_did_it(client: TestClient, session, ids: dict,  # noqa: ANN001
                                                  admin: Account) -> None:
    run_id = _finished_run(client, session, ids, {"adapter_model.safetensors": b"w"})
    run_name = client.get(f"/api/runs/{run_id}").json()["name"]
    dataset = client.get(f"/api/datasets/{ids['dataset_id']}").json()
    assert client.delete(f"/api/datasets/{dataset['id']}").status_code == 409  # refused: a run trained on it
    assert _audited(session, "dataset.delete", f"dataset {dataset['id']} '{dataset['name']}'") == []
    for url in (f"/api/runs/{run_id}", f"/api/datasets/{dataset['id']}", f"/api/models/{ids['model_id']}"):
        assert client.delete(url).status_code == 204, url
    assert _audited(session, "run.delete", f"run {run_id} '{run_name}'") == [admin.id]
    assert _audited(session, "dataset.delete", f"dataset {dataset['id']} '{dataset['name']}'") == [admin.id]
    assert _audited(session, "model.delete", f"model {ids['model_id']} '{ids['model']}'") == [admin.id]


@pytest.mark.committed
def test_collection_leaves_a_blob_a_concurrent_upload_is_reusing(resources: Resources) -> None:
    """The reuse's lock makes the collector wait; after the upload commits, the collector's delete fails on the
    foreign key, inside its savepoint, and the blob stays."""
    if resources.engine.dialect.name != "postgresql":
        pytest.skip("SQLite runs one writer at a time: there is no concurrent reuse to race")
    payload = f"blob-race {uuid.uuid4()}".encode()
    with session_scope(resources.session_factory) as session:
        blob_id = _blob(session, payload)  # stored, used by nothing
    uploader = resources.session_factory()
    reused = blobs.put_stream(uploader, [payload], "text/plain")  # locks the blob FOR SHARE, uncommitted
    assert reused.id == blob_id
    uploader.add(Dataset(name="race", filename="r.jsonl", file_type="jsonl", format="text", row_count=1,
                         size_bytes=len(payload), sha256=reused.sha256, blob_id=blob_id))
    uploader.flush()
    collected: list[int] = []
    collector = threading.Thread(target=lambda: collected.append(_collect(resources, blob_id)))
    collector.start()
    collector.join(1.0)
    assert collector.is_alive()  # waiting on the uploader's lock
    uploader.commit()
    collector.join(10)
    assert collected == [0]
    with session_scope(resources.session_factory) as session:
        assert session.get(Blob, blob_id) is not None
        dataset = session.scalars(select(Dataset).where(Dataset.blob_id == blob_id)).one()
        deletion.delete_dataset(session, dataset)
    with session_scope(resources.session_factory) as session:
        assert session.get(Blob, blob_id) is None  # now nothing uses it: collected with the dataset
    uploader.close()


def _collect(resources: Resources, blob_id: int) -> int:
    with session_scope(resources.session_factory) as session:
        return blobs.collect_garbage(session, [blob_id])
