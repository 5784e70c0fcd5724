"""The adapter registry over HTTP: versions registered from runs and kept steps with their lineage, aliases moved
and rolled back with an audit trail, a version an alias points to kept from deletion, `name:alias` and `name:vN`
served on /v1 (the stand-in service records what the web asked for), a version outliving its run, and another
user's adapter reading as missing."""

from __future__ import annotations

import io
import zipfile

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from app.core.generation.adapter_hash import adapter_sha256
from app.core.models import AuditEntry, RunStatus
from tests.support.accounts import Account, create_account
from tests.support.generation_fixtures import adapter_run

CHAT = [{"role": "user", "content": "Who are you?"}]


def _run(session, ids: dict, owner: Account, status: RunStatus = RunStatus.succeeded) -> int:  # noqa: ANN001
    """A run with a final adapter (when succeeded) and a kept step 2, owned by owner."""
    return adapter_run(session, ids["model_id"], ids["dataset_id"], owner.id, status=status, checkpoint=True)


def _audit(session, action: str) -> list[AuditEntry]:  # noqa: ANN001
    return list(session.scalars(select(AuditEntry).where(AuditEntry.action == action).order_by(AuditEntry.id)))


def test_a_run_and_a_step_become_versions_with_their_lineage(as_member, session, ids, member) -> None:  # noqa: ANN001
    run_id = _run(session, ids, member)
    first = as_member.post("/api/adapters", json={"name": "support-bot", "run_id": run_id, "description": "tone"})
    assert first.status_code == 201, first.text
    v1 = first.json()
    assert (v1["version"], v1["source"], v1["run_id"], v1["step"]) == (1, "run", run_id, None)
    assert v1["sha256"] == adapter_sha256(session, run_id)  # the same files as the run's final adapter
    lineage = v1["lineage"]
    assert lineage["base_model"]["name"] == ids["model"] and lineage["dataset"]["id"] == ids["dataset_id"]
    assert lineage["dataset"]["sha256"] and lineage["run"]["id"] == run_id and "spec" in lineage
    assert {f["name"] for f in lineage["files"]} >= {"adapter_config.json", "adapter_model.safetensors"}
    step = as_member.post("/api/adapters", json={"name": "support-bot", "run_id": run_id, "step": 2}).json()
    assert (step["version"], step["source"], step["step"]) == (2, "step", 2)
    assert step["sha256"] == adapter_sha256(session, run_id, 2)
    shown = as_member.get("/api/adapters/support-bot").json()
    assert [v["version"] for v in shown["versions"]] == [2, 1] and shown["description"] == "tone"
    assert "support-bot" in [a["name"] for a in as_member.get("/api/adapters").json()]
    zipped = zipfile.ZipFile(io.BytesIO(as_member.get("/api/adapters/support-bot/versions/2/download").content))
    assert sorted(zipped.namelist()) == ["README.md", "adapter_config.json", "adapter_model.safetensors"]
    card = zipped.read("README.md").decode()  # the model card: lineage, scores, how to load and serve it
    assert card.startswith("# support-bot:v2\n") and step["sha256"] in card and f"run #{run_id}" in card
    assert "Dataset: " in card and "PeftModel.from_pretrained" in card and "**vllm**" in card
    assert [e.target for e in _audit(session, "adapter.version.create")][-2:] == [
        f"adapter {shown_id(session, 'support-bot')} 'support-bot' v1",
        f"adapter {shown_id(session, 'support-bot')} 'support-bot' v2"]


def shown_id(session, name: str) -> int:  # noqa: ANN001
    from app.core.models import RegisteredAdapter

    return session.scalars(select(RegisteredAdapter.id).where(RegisteredAdapter.name == name)).first()


@pytest.mark.parametrize(("body", "status", "code"), [
    ({"name": "run-5"}, 422, "invalid_adapter_name"),
    ({"name": "bad name"}, 422, "invalid_adapter_name"),
    ({"step": 7}, 404, "step_not_kept"),
    ({"run_id": 2_000_000_000}, 404, "run_not_found"),
])
def test_bad_registrations_are_refused_naming_the_field(as_member, session, ids, member, body: dict,  # noqa: ANN001
                                                        status: int, code: str) -> None:
    run_id = _run(session, ids, member)
    response = as_member.post("/api/adapters", json={"name": "ok-name", "run_id": run_id, **body})
    assert response.status_code == status, response.text
    assert response.json()["error"]["code"] == code
    assert as_member.get("/api/adapters/ok-name").status_code == 404  # nothing half-stored


def test_an_unfinished_runs_final_adapter_is_refused_but_its_kept_step_is_not(as_member, session, ids,  # noqa: ANN001
                                                                               member) -> None:
    running = _run(session, ids, member, RunStatus.running)
    refused = as_member.post("/api/adapters", json={"name": "early", "run_id": running})
    assert refused.status_code == 409 and "give step" in refused.json()["error"]["message"]
    assert as_member.post("/api/adapters", json={"name": "early", "run_id": running, "step": 2}).status_code == 201


def test_aliases_promote_roll_back_and_protect_their_version(as_member, session, ids, member) -> None:  # noqa: ANN001
    run_id = _run(session, ids, member)
    for _ in range(2):
        as_member.post("/api/adapters", json={"name": "tone", "run_id": run_id})
    promoted = as_member.put("/api/adapters/tone/aliases/production", json={"version": 1})
    assert promoted.status_code == 200 and promoted.json()["aliases"] == {"production": 1}
    assert as_member.put("/api/adapters/tone/aliases/production", json={"version": 2}).json()["aliases"] == {
        "production": 2}
    kept = as_member.delete("/api/adapters/tone/versions/2")
    assert kept.status_code == 409 and "production points to" in kept.json()["error"]["message"]
    as_member.put("/api/adapters/tone/aliases/production", json={"version": 1})  # roll back
    assert as_member.delete("/api/adapters/tone/versions/2").status_code == 204
    assert [v["version"] for v in as_member.get("/api/adapters/tone").json()["versions"]] == [1]
    moves = [(e.details["from"], e.details["to"]) for e in _audit(session, "adapter.alias.move")][-3:]
    assert moves == [(None, 1), (1, 2), (2, 1)]
    assert all(e.actor == member.username for e in _audit(session, "adapter.alias.move")[-3:])
    for alias, version, code in (("v3", 1, "invalid_alias"), ("Prod", 1, "invalid_alias"),
                                 ("staging", 9, "version_not_found")):
        refused = as_member.put(f"/api/adapters/tone/aliases/{alias}", json={"version": version})
        assert refused.json()["error"]["code"] == code, refused.text
    assert as_member.delete("/api/adapters/tone/aliases/production").status_code == 204
    assert as_member.get("/api/adapters/tone").json()["aliases"] == {}


def test_name_alias_and_name_version_are_served_on_v1(as_member, session, ids, member, standin) -> None:  # noqa: ANN001
    run_id = _run(session, ids, member)
    version = as_member.post("/api/adapters", json={"name": "served", "run_id": run_id, "step": 2}).json()
    as_member.put("/api/adapters/served/aliases/staging", json={"version": 1})
    listed = {m["id"] for m in as_member.get("/v1/models").json()["data"]}
    assert {"served:v1", "served:staging"} <= listed
    for model in ("served:staging", "served:v1"):
        answer = as_member.post("/v1/chat/completions", json={"model": model, "messages": CHAT})
        assert answer.status_code == 200, answer.text
        sent = standin.requests[-1].adapter
        assert (sent.run_id, sent.step, sent.sha256) == (run_id, 2, version["sha256"]) and sent.version_id
    missing = as_member.post("/v1/chat/completions", json={"model": "served:v9", "messages": CHAT})
    assert missing.status_code == 404 and "has no v9" in missing.json()["error"]["message"]
    no_alias = as_member.post("/v1/chat/completions", json={"model": "served:production", "messages": CHAT})
    assert no_alias.status_code == 404 and "its aliases: staging" in no_alias.json()["error"]["message"]


def test_a_version_outlives_its_run(as_member, session, ids, member, standin) -> None:  # noqa: ANN001
    run_id = _run(session, ids, member)
    version = as_member.post("/api/adapters", json={"name": "keeper", "run_id": run_id}).json()
    assert as_member.delete(f"/api/runs/{run_id}").status_code == 204
    shown = as_member.get("/api/adapters/keeper").json()["versions"][0]
    assert shown["run_id"] is None and shown["lineage"]["run"]["id"] == run_id  # the lineage still says where
    zipped = zipfile.ZipFile(io.BytesIO(as_member.get("/api/adapters/keeper/versions/1/download").content))
    assert "adapter_model.safetensors" in zipped.namelist()
    answer = as_member.post("/v1/chat/completions", json={"model": "keeper:v1", "messages": CHAT})
    assert answer.status_code == 200 and standin.requests[-1].adapter.sha256 == version["sha256"]


def test_another_users_adapter_reads_as_missing(app, as_member, session, ids, member, resources,  # noqa: ANN001
                                                standin) -> None:
    run_id = _run(session, ids, member)
    as_member.post("/api/adapters", json={"name": "private", "run_id": run_id})
    with TestClient(app, headers=create_account(resources).headers) as stranger:
        assert stranger.get("/api/adapters/private").status_code == 404
        assert "private" not in [a["name"] for a in stranger.get("/api/adapters").json()]
        assert stranger.put("/api/adapters/private/aliases/production", json={"version": 1}).status_code == 404
        served = stranger.post("/v1/chat/completions", json={"model": "private:v1", "messages": CHAT})
        assert served.status_code == 404 and served.json()["error"]["code"] == "model_not_found"
        theirs = stranger.post("/api/adapters", json={"name": "private", "run_id": run_id})
        assert theirs.status_code == 404  # registering someone else's run: it reads as missing too


def test_the_pages_register_a_version_move_an_alias_and_refuse_a_protected_delete(as_member, session, ids,  # noqa: ANN001
                                                                                    member) -> None:
    run_id = _run(session, ids, member)
    prefilled = as_member.get(f"/adapters?run={run_id}").text
    assert f'name="run_id" type="number" min="1" step="1" required value="{run_id}"' in prefilled
    refused = as_member.post("/adapters", data={"name": "run-9", "run_id": str(run_id)})
    assert refused.status_code == 422 and "not run-&lt;number&gt;" in refused.text
    made = as_member.post("/adapters", data={"name": "paged", "run_id": str(run_id)}, follow_redirects=False)
    assert made.status_code == 303 and made.headers["location"] == "/adapters/paged#v1"
    moved = as_member.post("/adapters/paged/aliases", data={"alias": "production", "version": "1"},
                           follow_redirects=False)
    assert moved.status_code == 303
    page = as_member.get("/adapters/paged").text
    assert 'data-alias="production">paged:production → v1' in page
    assert f'href="/playground?model={ids["model"].replace(" ", "+")}&amp;model=paged%3Av1"' in page
    kept = as_member.post("/adapters/paged/versions/1/delete")
    assert kept.status_code == 409 and "production points to" in kept.text
    listing = as_member.get("/adapters").text
    assert 'data-adapter="paged"' in listing and "production → v1" in listing
    assert f'id="register-adapter" href="/adapters?run={run_id}"' in as_member.get(f"/runs/{run_id}").text
