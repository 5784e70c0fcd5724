"""Dataset analyses over HTTP: one per dataset, model and length; bad requests name the field."""

from __future__ import annotations

import pytest

from app.core.db import session_scope
from app.core.services import analyses as analysis_service


def _post(client, ids: dict, **body):
    return client.post(f"/api/datasets/{ids['dataset_id']}/analyses",
                       json={"base_model": ids["model"], "max_seq_length": 256, **body})


def test_request_queues_once_per_triple(client, ids) -> None:
    first = _post(client, ids)
    assert first.status_code == 202, first.text
    analysis = first.json()
    assert analysis["status"] == "queued" and analysis["base_model_id"] == ids["model_id"]
    assert analysis["max_seq_length"] == 256 and analysis["result"] == {}
    assert _post(client, ids).json()["id"] == analysis["id"]
    other = _post(client, ids, max_seq_length=512).json()
    assert other["id"] != analysis["id"]
    got = client.get(f"/api/datasets/{ids['dataset_id']}/analyses/{analysis['id']}")
    assert got.status_code == 200 and got.json()["id"] == analysis["id"]
    listed = client.get(f"/api/datasets/{ids['dataset_id']}/analyses").json()
    assert [a["id"] for a in listed] == [other["id"], analysis["id"]]


def test_a_system_prompt_is_its_own_analysis(client, ids) -> None:
    plain = _post(client, ids).json()
    prompted = _post(client, ids, system_prompt="You are Ada, made by Lab.").json()
    assert prompted["id"] != plain["id"]
    assert _post(client, ids, system_prompt="  You are Ada, made by Lab. ").json()["id"] == prompted["id"]
    assert _post(client, ids, system_prompt="   ").json()["id"] == plain["id"]  # blank is none


def test_a_failed_analysis_is_not_reused(client, resources, ids) -> None:
    analysis_id = _post(client, ids).json()["id"]
    with session_scope(resources.session_factory) as session:
        assert analysis_service.claim_analysis(session, analysis_id)
        assert not analysis_service.claim_analysis(session, analysis_id)  # a redelivery does nothing
        analysis_service.fail_analysis(session, analysis_id, "OSError: no tokenizer")
    failed = client.get(f"/api/datasets/{ids['dataset_id']}/analyses/{analysis_id}").json()
    assert failed["status"] == "failed" and failed["error"] == "OSError: no tokenizer"
    assert failed["finished_at"] is not None
    assert _post(client, ids).json()["id"] != analysis_id


@pytest.mark.parametrize("body, field", [
    ({"base_model": "no-such-model"}, "base_model"),
    ({"max_seq_length": 4}, "max_seq_length"),
    ({"max_seq_length": 10**7}, "max_seq_length"),
    ({"system_prompt": "x" * 4001}, "system_prompt"),
])
def test_bad_requests_name_the_field(client, ids, body: dict, field: str) -> None:
    response = _post(client, ids, **body)
    assert response.status_code == 422
    assert response.json()["error"]["field"] == field


def test_missing_dataset_or_analysis_is_404(client, ids) -> None:
    assert client.post("/api/datasets/999999/analyses", json={"base_model": ids["model"]}).status_code == 404
    missing = client.get(f"/api/datasets/{ids['dataset_id']}/analyses/999999")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "analysis_not_found"
