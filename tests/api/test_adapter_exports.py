"""Exports of a registered version over HTTP and in the service: requested (queued once per format), refused with a
reason (unknown format, files gone, another user's), finished with the child's files stored as blobs and streamed
back with their sha256, and deleted with their version, their blobs collected only when nothing else uses them."""

from __future__ import annotations

import hashlib
from datetime import timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import delete, func, select, update

from app.core import blobs
from app.core.db import utcnow
from app.core.errors import StudioError
from app.core.jobs import queue_for
from app.core.models import AdapterExport, AdapterExportFile, AdapterVersion, AdapterVersionFile, AuditEntry, Blob
from app.core.services import exports as export_service
from tests.support.accounts import create_account
from tests.support.generation_fixtures import adapter_run


def _version(as_member, session, ids, member, name: str = "exported", step: int | None = None) -> int:  # noqa: ANN001
    """Register a run's adapter (or its kept step 2) under name; the version's number."""
    run_id = adapter_run(session, ids["model_id"], ids["dataset_id"], member.id, checkpoint=True)
    made = as_member.post("/api/adapters", json={"name": name, "run_id": run_id, "step": step})
    assert made.status_code == 201, made.text
    return made.json()["version"]


def _exports(session) -> list[AdapterExport]:  # noqa: ANN001
    session.expire_all()
    return list(session.scalars(select(AdapterExport).order_by(AdapterExport.id)))


def _finish(session, export_id: int, out: Path, files: dict[str, bytes]) -> list[dict]:  # noqa: ANN001
    """What the export child would leave: files in out, then the job's finish_export."""
    assert export_service.claim_export(session, export_id) == 1
    out.mkdir(parents=True)
    written = []
    for name, data in files.items():
        (out / name).write_bytes(data)
        written.append({"name": name, "size": len(data), "sha256": hashlib.sha256(data).hexdigest()})
    report = {"checks": {"f16": {"top1": 0.99, "verified": True}, "q8_0": {"top1": 0.97, "verified": True}},
              "seconds": 12.5}
    assert export_service.finish_export(session, export_id, out, written, report)
    session.commit()
    return written


def test_an_export_is_queued_once_per_format_and_audited(as_member, session, ids, member, settings) -> None:  # noqa: ANN001
    number = _version(as_member, session, ids, member)
    made = as_member.post(f"/api/adapters/exported/versions/{number}/exports", json={"format": "gguf"})
    assert made.status_code == 202, made.text
    body = made.json()
    assert (body["status"], body["format"], body["adapter"], body["version"], body["files"]) == (
        "queued", "gguf", "exported", number, [])
    rows = _exports(session)
    assert [(r.id, r.status, r.format, r.created_by) for r in rows] == [(body["id"], "queued", "gguf", member.username)]
    again = as_member.post(f"/api/adapters/exported/versions/{number}/exports", json={"format": "gguf"})
    assert again.status_code == 202 and again.json()["id"] == body["id"]  # the same export, not a second one
    other = as_member.post(f"/api/adapters/exported/versions/{number}/exports", json={"format": "merged"}).json()
    assert other["id"] != body["id"]
    listed = as_member.get(f"/api/adapters/exported/versions/{number}/exports").json()
    assert [e["id"] for e in listed] == [other["id"], body["id"]]
    assert as_member.get(f"/api/exports/{body['id']}").json()["status"] == "queued"
    audited = session.scalars(select(AuditEntry).where(AuditEntry.action == "adapter.export")).all()
    assert [e.details["format"] for e in audited][-2:] == ["gguf", "merged"]
    assert queue_for(settings, export_service.EXPORT_TASK) == settings.queue  # the training queue, not short


def test_an_unknown_format_is_refused_naming_the_field(as_member, session, ids, member) -> None:  # noqa: ANN001
    number = _version(as_member, session, ids, member)
    refused = as_member.post(f"/api/adapters/exported/versions/{number}/exports", json={"format": "onnx"})
    assert refused.status_code == 422, refused.text
    error = refused.json()["error"]
    assert error["field"] == "format" and "merged, gguf, gguf_lora" in error["message"]
    assert _exports(session) == []


def test_a_version_whose_files_are_gone_is_refused_and_nothing_stored(as_member, session, ids,  # noqa: ANN001
                                                                       member) -> None:
    number = _version(as_member, session, ids, member)
    version_id = session.scalar(select(AdapterVersion.id).where(AdapterVersion.version == number))
    session.execute(delete(AdapterVersionFile).where(AdapterVersionFile.version_id == version_id))
    session.commit()
    refused = as_member.post(f"/api/adapters/exported/versions/{number}/exports", json={"format": "merged"})
    assert refused.status_code == 409 and refused.json()["error"]["code"] == "version_files_missing"
    assert _exports(session) == []
    assert not session.scalars(select(AuditEntry).where(AuditEntry.action == "adapter.export")).all()


def test_another_users_adapter_and_export_read_as_missing(app, as_member, session, ids, member,  # noqa: ANN001
                                                         resources) -> None:
    number = _version(as_member, session, ids, member)
    export_id = as_member.post(f"/api/adapters/exported/versions/{number}/exports",
                               json={"format": "gguf"}).json()["id"]
    with TestClient(app, headers=create_account(resources).headers) as stranger:
        assert stranger.post(f"/api/adapters/exported/versions/{number}/exports",
                             json={"format": "gguf"}).status_code == 404
        assert stranger.get(f"/api/adapters/exported/versions/{number}/exports").status_code == 404
        assert stranger.get(f"/api/exports/{export_id}").status_code == 404
        assert stranger.get(f"/api/exports/{export_id}/files/x.gguf").status_code == 404
        assert stranger.post(f"/api/exports/{export_id}/cancel").status_code == 404
    assert as_member.get("/api/exports/2000000000").status_code == 404
    assert len(_exports(session)) == 1


def test_finished_files_are_stored_as_blobs_and_streamed_back(as_member, session, ids, member,  # noqa: ANN001
                                                              tmp_path) -> None:
    number = _version(as_member, session, ids, member)
    export_id = as_member.post(f"/api/adapters/exported/versions/{number}/exports",
                               json={"format": "gguf"}).json()["id"]
    early = as_member.get(f"/api/exports/{export_id}/files/exported-v1.gguf")
    assert early.status_code == 409 and early.json()["error"]["code"] == "export_not_ready"
    payload = {"exported-v1.gguf": b"GGUF" + bytes(range(256)) * 40, "exported-v1-q8_0.gguf": b"GGUF q8"}
    written = _finish(session, export_id, tmp_path / "out", payload)
    shown = as_member.get(f"/api/exports/{export_id}").json()
    assert shown["status"] == "succeeded" and shown["agreement"] == 0.97 and shown["report"]["seconds"] == 12.5
    assert {(f["name"], f["size"], f["sha256"]) for f in shown["files"]} == {
        (w["name"], w["size"], w["sha256"]) for w in written}
    for file in shown["files"]:
        got = as_member.get(file["url"])
        assert got.status_code == 200 and got.content == payload[file["name"]]
        assert got.headers["x-content-sha256"] == file["sha256"] == hashlib.sha256(got.content).hexdigest()
    assert as_member.get(f"/api/exports/{export_id}/files/other.gguf").status_code == 404
    stored = session.scalars(select(AdapterExportFile).where(AdapterExportFile.export_id == export_id)).all()
    assert all(session.get(Blob, f.blob_id).sha256 == f.sha256 for f in stored)
    assert blobs.collect_garbage(session, [f.blob_id for f in stored]) == 0  # export files are users of blobs
    page = as_member.get("/adapters/exported").text
    assert f'href="/api/exports/{export_id}/files/exported-v1.gguf"' in page and "97.0% agreement" in page
    again = as_member.post(f"/api/adapters/exported/versions/{number}/exports", json={"format": "gguf"})
    assert again.json()["id"] == export_id  # a succeeded export is reused


def test_a_file_that_is_not_what_the_child_reported_is_refused(as_member, session, ids, member,  # noqa: ANN001
                                                               tmp_path) -> None:
    number = _version(as_member, session, ids, member)
    export_id = as_member.post(f"/api/adapters/exported/versions/{number}/exports",
                               json={"format": "merged"}).json()["id"]
    assert export_service.claim_export(session, export_id) == 1
    session.commit()
    (tmp_path / "model.safetensors").write_bytes(b"weights")
    for name, sha in (("model.safetensors", "0" * 64), ("../escape", "0" * 64), ("absent.bin", "0" * 64)):
        with pytest.raises(StudioError):
            export_service.finish_export(session, export_id, tmp_path, [{"name": name, "size": 7, "sha256": sha}],
                                         {})
        session.rollback()
    session.expire_all()
    assert session.get(AdapterExport, export_id).status == "running"
    assert not session.scalars(select(AdapterExportFile)).all()


def test_deleting_a_version_deletes_its_exports_and_collects_only_unused_blobs(as_member, session, ids,  # noqa: ANN001
                                                                               member, tmp_path) -> None:
    first = _version(as_member, session, ids, member)
    second = _version(as_member, session, ids, member, step=2)
    ids_ = [as_member.post(f"/api/adapters/exported/versions/{n}/exports", json={"format": "gguf_lora"}).json()["id"]
            for n in (first, second)]
    shared, own = b"the same base gguf", b"only the first's lora"
    _finish(session, ids_[0], tmp_path / "a", {"base-f16.gguf": shared, "lora.gguf": own})
    _finish(session, ids_[1], tmp_path / "b", {"base-f16.gguf": shared})
    sha = {data: hashlib.sha256(data).hexdigest() for data in (shared, own)}

    def blob_count(data: bytes) -> int:
        session.expire_all()
        return session.scalar(select(func.count()).select_from(Blob).where(Blob.sha256 == sha[data]))

    assert as_member.delete(f"/api/adapters/exported/versions/{first}").status_code == 204
    assert [e.id for e in _exports(session)] == [ids_[1]]
    assert (blob_count(shared), blob_count(own)) == (1, 0)  # the second's export still uses the shared blob
    assert as_member.delete(f"/api/adapters/exported/versions/{second}").status_code == 204
    assert _exports(session) == [] and blob_count(shared) == 0


def test_the_adapter_page_requests_exports_and_lists_them(as_member, session, ids, member) -> None:  # noqa: ANN001
    number = _version(as_member, session, ids, member)
    page = as_member.get("/adapters/exported").text
    assert all(f'id="export-{fmt}-v{number}"' in page for fmt in ("merged", "gguf", "gguf_lora"))
    made = as_member.post(f"/adapters/exported/versions/{number}/exports", data={"format": "gguf"},
                          follow_redirects=False)
    assert made.status_code == 303 and made.headers["location"] == f"/adapters/exported#exports-v{number}"
    export = _exports(session)[0]
    page = as_member.get("/adapters/exported").text
    assert f'data-export="{export.id}" data-status="queued"' in page
    refused = as_member.post(f"/adapters/exported/versions/{number}/exports", data={"format": "zip"})
    assert refused.status_code == 422 and "Unknown export format" in refused.text


def test_an_export_whose_worker_stopped_beating_is_queued_again(as_member, session, ids, member) -> None:  # noqa: ANN001
    number = _version(as_member, session, ids, member)
    export_id = as_member.post(f"/api/adapters/exported/versions/{number}/exports",
                               json={"format": "gguf"}).json()["id"]
    assert export_service.claim_export(session, export_id) == 1
    session.execute(update(AdapterExport).where(AdapterExport.id == export_id)
                    .values(heartbeat_at=utcnow() - timedelta(hours=1)))
    assert export_service.reap_lost_exports(session, timedelta(minutes=5), max_attempts=1) == {export_id: "failed"}
    session.rollback()
    assert export_service.claim_export(session, export_id) == 1
    session.execute(update(AdapterExport).where(AdapterExport.id == export_id)
                    .values(heartbeat_at=utcnow() - timedelta(hours=1)))
    assert export_service.reap_lost_exports(session, timedelta(minutes=5), max_attempts=3) == {export_id: "queued"}
    assert export_service.beat(session, export_id, 1) == "lost"  # the first attempt stores nothing now
    assert export_service.claim_export(session, export_id) == 2


def test_an_export_is_refused_once_storage_is_full_and_its_files_count(as_member, session, ids, member,
                                                                         tmp_path) -> None:  # noqa: ANN001
    from app.core.models import User
    from app.core.services import quotas

    number = _version(as_member, session, ids, member)
    made = as_member.post(f"/api/adapters/exported/versions/{number}/exports", json={"format": "merged"}).json()
    before = quotas.storage_used(session, member.id)
    _finish(session, made["id"], tmp_path / "out", {"model.safetensors": b"w" * 5000})
    assert quotas.storage_used(session, member.id) == before + 5000  # the export's files count as the owner's
    session.get(User, member.id).max_storage_bytes = before + 5000  # full
    session.flush()
    refused = as_member.post(f"/api/adapters/exported/versions/{number}/exports", json={"format": "gguf"})
    assert refused.status_code == 409, refused.text
    assert refused.json()["error"]["code"] == "storage_quota"
    assert [e.format for e in _exports(session)] == ["merged"]


def test_a_second_live_export_of_the_same_format_is_never_stored(as_member, session, ids, member) -> None:  # noqa: ANN001
    """Two requests racing past the lookup: the partial unique index keeps one; the loser gets the winner's row."""
    number = _version(as_member, session, ids, member)
    first = as_member.post(f"/api/adapters/exported/versions/{number}/exports", json={"format": "gguf"}).json()
    version_id = _exports(session)[0].version_id
    racer = AdapterExport(version_id=version_id, format="gguf", status="queued", stage="", report={})
    assert export_service.insert_unless_live(session, racer).id == first["id"]
    assert [e.id for e in _exports(session)] == [first["id"]]
    session.execute(update(AdapterExport).where(AdapterExport.id == first["id"]).values(status="failed"))
    retry = AdapterExport(version_id=version_id, format="gguf", status="queued", stage="", report={})
    assert export_service.insert_unless_live(session, retry) is retry  # after a failure a new one may be made
