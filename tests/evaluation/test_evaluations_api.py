"""Requesting evaluations over HTTP: every bad input a precise 4xx naming its field, nothing stored; the list, the
report page and the compare page's side-by-side scores."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from app.core.models import Evaluation, Run
from tests.evaluation.conftest import ROWS, adapter_run, upload
from tests.support.accounts import create_account
from tests.support.rows import insert_run


def count(session) -> int:  # noqa: ANN001
    return session.scalar(select(func.count()).select_from(Evaluation))


def post(client, **body) -> object:  # noqa: ANN001, ANN003
    return client.post("/api/evaluations", json=body)


def test_a_request_is_queued_listed_and_readable(client, session, tiny) -> None:  # noqa: ANN001
    dataset_id = upload(client, ROWS)
    created = post(client, dataset_id=dataset_id, model=tiny["name"], scorers=["exact", "exact", "overlap"])
    assert created.status_code == 202, created.text
    body = created.json()
    assert body["status"] == "queued" and body["scorers"] == ["exact", "overlap"] and body["run_id"] is None
    assert body["params"] == {"max_examples": 50, "max_new_tokens": 64, "seed": 0, "rubric": None}
    assert body["id"] in [e["id"] for e in client.get("/api/evaluations").json()]
    one = client.get(f"/api/evaluations/{body['id']}").json()
    assert one["examples"] == [] and one["examples_total"] == 0
    page = client.get(f"/evaluations/{body['id']}")
    assert page.status_code == 200 and 'id="evaluation-status"' in page.text
    listing = client.get("/evaluations")
    assert listing.status_code == 200 and f'data-evaluation-id="{body["id"]}"' in listing.text


@pytest.mark.parametrize(("change", "status", "field"), [
    ({"max_examples": 0}, 422, "max_examples"),
    ({"max_examples": 501}, 422, "max_examples"),
    ({"max_new_tokens": 5000}, 422, "max_new_tokens"),
    ({"seed": -1}, 422, "seed"),
    ({"scorers": ["bleurt"]}, 422, "scorers.0"),
    ({"scorers": []}, 422, "scorers"),
    ({"model": "no-such-model"}, 404, "model"),
    ({"model": "run-999999"}, 404, "model"),
    ({"dataset_id": 999999}, 404, "dataset_id"),
    ({"general_dataset_id": 999999}, 404, "general_dataset_id"),
    ({"scorers": ["judge"], "rubric": "Is it right?"}, 422, "scorers"),  # no judge endpoint configured
])
def test_bad_input_is_refused_naming_the_field(client, session, tiny, change: dict, status: int,  # noqa: ANN001
                                               field: str) -> None:
    before = count(session)
    body = {"dataset_id": upload(client, ROWS), "model": tiny["name"], **change}
    response = client.post("/api/evaluations", json=body)
    assert response.status_code == status, response.text
    assert response.json()["error"]["field"] == field
    assert count(session) == before


def test_a_dataset_without_prompts_is_refused(client, session, tiny) -> None:  # noqa: ANN001
    texts = upload(client, [{"text": "just some text"}, {"text": "more"}], "texts")
    response = post(client, dataset_id=texts, model=tiny["name"])
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "no_usable_prompts" and error["field"] == "dataset_id" and "text" in error["message"]


def test_another_users_adapter_and_evaluation_read_as_missing(app, client, resources, tiny,  # noqa: ANN001
                                                             adapter_folders) -> None:
    run_id, _ = adapter_run(resources, adapter_folders["real"], tiny["id"])
    mine = post(client, dataset_id=upload(client, ROWS), model=f"run-{run_id}").json()
    other = create_account(resources)
    with TestClient(app, headers=other.headers) as theirs:
        response = post(theirs, dataset_id=upload(theirs, ROWS), model=f"run-{run_id}")
        assert response.status_code == 404 and response.json()["error"]["code"] == "model_not_found"
        assert theirs.get(f"/api/evaluations/{mine['id']}").status_code == 404
        assert post(theirs, dataset_id=mine["dataset_id"], model=tiny["name"]).status_code == 404
        assert mine["id"] not in [e["id"] for e in theirs.get("/api/evaluations").json()]


def test_the_form_shows_a_refusal_by_its_field(client, tiny) -> None:  # noqa: ANN001
    form = {"model": tiny["name"], "dataset_id": str(upload(client, ROWS)), "scorer_exact": "on",
            "max_examples": "0", "max_new_tokens": "8", "seed": "0"}
    page = client.post("/evaluations", data=form, follow_redirects=False)
    assert page.status_code == 422 and "max_examples must be between 1 and 500" in page.text
    form["max_examples"] = "5"
    started = client.post("/evaluations", data=form, follow_redirects=False)
    assert started.status_code == 303 and started.headers["location"].startswith("/evaluations/")


def test_compare_shows_each_runs_latest_evaluation_side_by_side(client, session) -> None:  # noqa: ANN001
    runs = [insert_run(session, name=f"r{i}") for i in range(2)]
    for run_id, mean in zip(runs, (0.25, 0.75), strict=True):
        numbers = {"base": {"mean": 0.5, "n": 4, "ci": [0.1, 0.9]}, "adapter": {"mean": mean, "n": 4, "ci": [0, 1]},
                   "difference": {"mean": mean - 0.5, "ci": [-0.5, 0.5]}}
        session.add(Evaluation(model=f"run-{run_id}", run_id=run_id, base_name="b", scorers=["exact"], params={},
                               status="succeeded", summary={"main": {"scorers": {"exact": numbers}}}))
    session.commit()
    page = client.get("/runs/compare", params={"ids": [str(r) for r in runs]})
    assert page.status_code == 200 and 'id="compare-eval-scores"' in page.text
    assert "25.0%" in page.text and "75.0%" in page.text and "+25.0 pts" in page.text
    assert session.get(Run, runs[0]) is not None
