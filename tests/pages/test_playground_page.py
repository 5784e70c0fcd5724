"""The playground page and its stream (/api/playground/stream): the models a user may pick, the form set up from the
URL, and the stream's events and errors against the stand-in generation service on the real Redis (its own
database and the session's own namespace, as tests/api/test_openai_compat.py)."""

from __future__ import annotations

import html
import json
import re

import httpx
import pytest
from fastapi.testclient import TestClient

from app.core.generation import protocol
from app.core.generation.adapter_hash import adapter_sha256
from app.core.models import RunStatus
from tests.support.accounts import log_in
from tests.support.generation_fixtures import adapter_run as stored_adapter_run
from tests.support.generation_standin import FAIL_MARKER, GenerationStandIn

STREAM = "/api/playground/stream"
HELLO = [{"role": "user", "content": "Say hello"}]


def adapter_run(session, ids: dict, owner_id: int | None, name: str,  # noqa: ANN001
                status: RunStatus = RunStatus.succeeded) -> int:
    """A run with adapter files, as a worker leaves a succeeded one, on the session's model and dataset."""
    return stored_adapter_run(session, ids["model_id"], ids["dataset_id"], owner_id, name, status)


def options(page: str, index: int) -> dict[str, str]:
    """The options of column `index`'s model picker: value -> label (selected ones marked with a leading '*')."""
    block = re.search(rf'<select id="pg-model-{index}".*?</select>', page, re.S).group(0)
    found = re.findall(r'<option value="([^"]*)"( selected)?( disabled)?>([^<]*)</option>', block)
    return {html.unescape(v): ("*" if sel else "") + html.unescape(label) for v, sel, _dis, label in found}


def selected(page: str, index: int) -> str:
    return next(v for v, label in options(page, index).items() if label.startswith("*"))


def events(response: httpx.Response) -> list[tuple[str, dict]]:
    """(event, data) of each server-sent event."""
    found = []
    for block in response.text.split("\n\n"):
        lines = dict(line.split(": ", 1) for line in block.splitlines() if ": " in line)
        if "event" in lines:
            found.append((lines["event"], json.loads(lines["data"])))
    return found


def test_the_page_lists_the_bases_and_only_the_callers_adapters(as_member, session, ids, member,  # noqa: ANN001
                                                                admin) -> None:
    own = adapter_run(session, ids, member.id, "my tuned run")
    others = adapter_run(session, ids, admin.id, "admins secret run")
    failed = adapter_run(session, ids, member.id, "my failed run", RunStatus.failed)
    response = as_member.get("/playground")
    assert response.status_code == 200, response.text
    picker = options(response.text, 0)
    assert ids["model"] in picker and f"run-{own}" in picker
    assert f"my tuned run · #{own} (adapter on {ids['model']})" in picker[f"run-{own}"]
    assert f"run-{others}" not in picker and f"run-{failed}" not in picker
    assert "admins secret run" not in response.text
    # A running run's kept step is a choice too (labelled with its step); another user's never.
    running = stored_adapter_run(session, ids["model_id"], ids["dataset_id"], member.id, "still training",
                                 RunStatus.running, checkpoint=True)
    theirs = stored_adapter_run(session, ids["model_id"], ids["dataset_id"], admin.id, "admins steps",
                                RunStatus.running, checkpoint=True)
    picker = options(as_member.get("/playground").text, 0)
    assert picker[f"run-{running}@step-2"] == f"still training · #{running} (step 2 on {ids['model']})"
    assert f"run-{running}" not in picker and f"run-{theirs}@step-2" not in picker
    # By default: a base beside the newest adapter, a third column ready but hidden.
    assert selected(response.text, 0) != f"run-{own}" and selected(response.text, 1) == f"run-{own}"
    assert re.search(r'id="pg-col-2"[^>]*\shidden', response.text)
    assert 'href="/playground" aria-current="page"' in response.text


def test_the_query_string_fills_the_form(client, session, ids, admin) -> None:  # noqa: ANN001
    run_id = adapter_run(session, ids, admin.id, "tuned")
    query = {"model": [ids["model"], f"run-{run_id}", ids["model"]], "system": "Be <brief>.", "max_tokens": "12",
             "temperature": "0.3", "top_p": "0.9", "seed": "7", "stop": ["END", "\\n\\n"], "prompt": "Hello & bye"}
    page = client.get("/playground", params=query).text
    assert [selected(page, i) for i in range(3)] == query["model"]
    assert not re.search(r'id="pg-col-2"[^>]*\shidden', page)  # three models: the third column is shown
    assert ">Be &lt;brief&gt;.</textarea>" in page and ">Hello &amp; bye</textarea>" in page
    assert ">END\n\\n\\n</textarea>" in page
    for field, value in (("max-tokens", "12"), ("temperature", "0.3"), ("top-p", "0.9"), ("seed", "7")):
        assert re.search(rf'id="pg-{field}"[^>]*value="{re.escape(value)}"', page), field


def test_an_adapter_the_caller_may_not_use_shows_as_unavailable(as_member, session, ids, admin) -> None:  # noqa: ANN001
    others = adapter_run(session, ids, admin.id, "admins secret run")
    response = as_member.get("/playground", params={"model": [ids["model"], f"run-{others}", "gone-model"]})
    assert response.status_code == 200
    assert options(response.text, 1)[f"run-{others}"] == f"*run-{others} — unavailable"
    assert options(response.text, 2)["gone-model"] == "*gone-model — unavailable"
    assert "admins secret run" not in response.text
    assert 'id="pg-unavailable-1"' in response.text and 'id="pg-unavailable-0"' not in response.text


@pytest.mark.parametrize("value", ["abc", "1e999", "-1", "x" * 5000, "\u0000"])
def test_odd_query_values_never_break_the_page(client, value: str) -> None:  # noqa: ANN001
    query = {"model": value, "temperature": value, "seed": value, "stop": value, "prompt": value}
    assert client.get("/playground", params=query).status_code == 200


def test_the_stream_sends_the_setup_and_streams_the_studios_events(client, session, ids, admin,  # noqa: ANN001
                                                                   standin: GenerationStandIn) -> None:
    run_id = adapter_run(session, ids, admin.id, "tuned")
    body = {"model": f"run-{run_id}", "system": "Be brief.", "messages": HELLO, "max_tokens": 4,
            "temperature": 0.5, "top_p": 0.9, "seed": 11, "stop": ["zzz"]}
    response = client.post(STREAM, json=body)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/event-stream")
    found = events(response)
    names = [name for name, _ in found]
    assert names == ["start"] + ["token"] * 4 + ["end"]
    start, end = found[0][1], found[-1][1]
    assert start["adapter_sha256"] == adapter_sha256(session, run_id)
    assert start["rendered_prompt"] == "Be brief.\nSay hello" and start["prompt_tokens"] == 4
    assert "".join(data["text"] for name, data in found if name == "token") == "Hello from the stand-in"
    assert end == {"finish_reason": "length", "prompt_tokens": 4, "completion_tokens": 4, "ttft_ms": 1.0,
                   "tokens_per_s": 100.0}
    sent = standin.requests[-1]
    assert [m.role for m in sent.messages] == ["system", "user"] and sent.adapter.run_id == run_id
    assert sent.sampling.model_dump() == {"max_tokens": 4, "temperature": 0.5, "top_p": 0.9, "stop": ("zzz",),
                                          "seed": 11}


def test_a_second_turn_carries_the_columns_own_reply(client, ids, standin: GenerationStandIn) -> None:  # noqa: ANN001
    turns = [*HELLO, {"role": "assistant", "content": "Hi."}, {"role": "user", "content": "Again"}]
    response = client.post(STREAM, json={"model": ids["model"], "messages": turns})
    assert [name for name, _ in events(response)][-1] == "end"
    assert [m.role for m in standin.requests[-1].messages] == ["user", "assistant", "user"]
    assert standin.requests[-1].adapter is None


def test_no_service_is_a_503_saying_how_to_start_one(client, ids, gen_settings) -> None:  # noqa: ANN001
    response = client.post(STREAM, json={"model": ids["model"], "messages": HELLO})
    assert response.status_code == 503, response.text
    error = response.json()["error"]
    assert error["code"] == "generation_unavailable"
    assert "lorastudio up" in error["message"] and "python -m worker.generation" in error["message"]


def test_another_users_adapter_is_a_404(as_member, session, ids, admin, standin) -> None:  # noqa: ANN001
    others = adapter_run(session, ids, admin.id, "admins secret run")
    for model in (f"run-{others}", "run-999999", "no-such-model"):
        response = as_member.post(STREAM, json={"model": model, "messages": HELLO})
        assert response.status_code == 404, response.text
        assert response.json()["error"]["code"] == "model_not_found"
        assert "admins secret run" not in response.text
    assert not standin.requests


@pytest.mark.parametrize(("change", "field"), [
    ({"temperature": 3}, "temperature"), ({"top_p": 0}, "top_p"), ({"max_tokens": 0}, "max_tokens"),
    ({"seed": -1}, "seed"), ({"stop": ["a", "b", "c", "d", "e"]}, "stop"), ({"messages": []}, "messages"),
    ({"temperature": "warm"}, "temperature"), ({"model": ""}, "model"), ({"bogus": 1}, "bogus"),
    ({"messages": [{"role": "robot", "content": "x"}]}, "messages.0.role"),
])
def test_bad_settings_are_a_422_naming_the_field(client, ids, standin, change: dict, field: str) -> None:  # noqa: ANN001
    response = client.post(STREAM, json={"model": ids["model"], "messages": HELLO, **change})
    assert response.status_code == 422, response.text
    assert response.json()["error"]["field"] == field
    assert not standin.requests


def test_a_service_error_is_answered_with_its_status(client, ids, standin) -> None:  # noqa: ANN001
    response = client.post(STREAM, json={"model": ids["model"], "messages": [{"role": "user", "content": FAIL_MARKER}]})
    assert response.status_code == 400, response.text
    assert response.json()["error"]["code"] == "context_length_exceeded"


def test_a_browser_session_streams_with_the_pages_csrf_token(app, ids, admin, standin) -> None:  # noqa: ANN001
    with TestClient(app) as browser:
        token = log_in(browser, admin.username, admin.password)
        assert f'data-csrf="{token}"' in browser.get("/playground").text
        body = {"model": ids["model"], "messages": HELLO}
        refused = browser.post(STREAM, json=body)
        assert refused.status_code == 403 and refused.json()["error"]["code"] == "csrf_failed"
        accepted = browser.post(STREAM, json=body, headers={"X-CSRF-Token": token})
        assert accepted.status_code == 200 and events(accepted)[-1][0] == "end"


def test_a_conversation_past_the_prompt_bound_is_a_422(client, ids, standin) -> None:  # noqa: ANN001
    half = "x" * (protocol.MAX_PROMPT_CHARS // 2 + 1)
    response = client.post(STREAM, json={"model": ids["model"], "system": half, "messages": [
        {"role": "user", "content": half}]})
    assert response.status_code == 422 and response.json()["error"]["field"] == "messages", response.text
    assert not standin.requests


def test_the_run_page_opens_its_final_and_step_adapters_in_the_playground(as_member, session, ids,  # noqa: ANN001
                                                                          member) -> None:
    run_id = stored_adapter_run(session, ids["model_id"], ids["dataset_id"], member.id, "linked", checkpoint=True)
    page = as_member.get(f"/runs/{run_id}").text
    base = ids["model"].replace(" ", "+")
    assert f'id="try-adapter" href="/playground?model={base}&amp;model=run-{run_id}"' in page
    steps = re.search(r'<p class="muted" id="run-steps">.*?</p>', page, re.S).group(0)
    assert f'href="/playground?model={base}&amp;model=run-{run_id}%40step-2"' in steps
    opened = as_member.get(f"/playground?model={ids['model']}&model=run-{run_id}%40step-2").text
    assert selected(opened, 0) == ids["model"] and selected(opened, 1) == f"run-{run_id}@step-2"
