"""The OpenAI-compatible routes (/v1) against a stand-in generation service on the real Redis: the models a user
may use, chat completions and completions whole and streamed, OpenAI-shaped errors, and the official `openai`
client against a real web process.

The routes' Redis is a database of its own (GEN_DB) and the session's own generation namespace: a real generation
service started by other tests must not take these requests."""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import openai
import pytest
import redis
from fastapi.testclient import TestClient

from app.core.db import DbGate, session_scope
from app.core.generation import protocol
from app.core.generation.adapter_hash import adapter_sha256
from app.core.models import RunStatus
from app.core.resources import Resources
from app.core.services import datasets as dataset_service
from app.core.services import models as model_service
from tests.support.accounts import Account, create_account
from tests.support.generation_fixtures import GEN_URL, adapter_run, clear_generation_keys, generation_keys
from tests.support.generation_standin import FAIL_MARKER, SLOW_MARKER, GenerationStandIn
from tests.support.upload_server import web_server

ANSWER = "Hello from the stand-in service."
CHAT = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Say hello"}]


def checkpointed_run(session, base_model_id: int, dataset_id: int, owner_id: int | None,  # noqa: ANN001
                     status: RunStatus = RunStatus.succeeded) -> int:
    """A run as a worker leaves it: with adapter files and a checkpoint's, which is not part of the adapter."""
    return adapter_run(session, base_model_id, dataset_id, owner_id, status=status, checkpoint=True)


def _events(response: httpx.Response) -> list[dict | str]:
    """The data of each server-sent event ([DONE] as a string)."""
    found = []
    for block in response.text.split("\n\n"):
        if block.startswith("data: "):
            data = block.removeprefix("data: ")
            found.append(data if data == "[DONE]" else json.loads(data))
    return found


def _assert_openai_error(response: httpx.Response, status: int, param: str | None = None,
                         code: str | None = None) -> dict:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}, error
    if param is not None:
        assert error["param"] == param, error
    if code is not None:
        assert error["code"] == code, error
    return error


def test_models_lists_the_bases_and_the_callers_own_adapters(as_member, session, ids, member, admin,  # noqa: ANN001
                                                            standin) -> None:
    own = checkpointed_run(session, ids["model_id"], ids["dataset_id"], member.id)
    others = checkpointed_run(session, ids["model_id"], ids["dataset_id"], admin.id)
    queued = checkpointed_run(session, ids["model_id"], ids["dataset_id"], member.id, RunStatus.queued)
    body = as_member.get("/v1/models").json()
    listed = {m["id"]: m for m in body["data"]}
    assert body["object"] == "list"
    assert ids["model"] in listed and f"run-{own}" in listed
    assert f"run-{others}" not in listed and f"run-{queued}" not in listed
    assert listed[f"run-{own}"]["owned_by"] == member.username
    assert listed[f"run-{own}"]["object"] == "model" and listed[f"run-{own}"]["created"] > 0
    # Every stored step's adapter is a model too, a queued (or running) run's included; never another user's.
    assert {f"run-{own}@step-2", f"run-{queued}@step-2"} <= set(listed) and f"run-{others}@step-2" not in listed


def test_a_step_of_a_running_run_is_served_as_that_steps_adapter(as_member, session, ids, member,  # noqa: ANN001
                                                                  standin) -> None:
    running = checkpointed_run(session, ids["model_id"], ids["dataset_id"], member.id, RunStatus.running)
    response = as_member.post("/v1/chat/completions", json={"model": f"run-{running}@step-2", "messages": CHAT})
    assert response.status_code == 200, response.text
    assert response.json()["model"] == f"run-{running}@step-2"
    sent = standin.requests[-1].adapter
    assert (sent.run_id, sent.step, sent.sha256) == (running, 2, adapter_sha256(session, running, 2))
    assert sent.sha256 != adapter_sha256(session, running)  # not the final adapter's files
    missing = as_member.post("/v1/completions", json={"model": f"run-{running}@step-3", "prompt": "x"})
    assert "no adapter of step 3: its stored steps are 2" in _assert_openai_error(
        missing, 404, "model", "model_not_found")["message"]


def test_a_chat_completion_on_an_adapter_sends_the_adapters_identity(as_member, session, ids, member,  # noqa: ANN001
                                                                     standin) -> None:
    run_id = checkpointed_run(session, ids["model_id"], ids["dataset_id"], member.id)
    response = as_member.post("/v1/chat/completions", json={"model": f"run-{run_id}", "messages": CHAT,
                                                            "temperature": 0, "seed": 7})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["id"].startswith("chatcmpl-") and body["object"] == "chat.completion"
    assert body["model"] == f"run-{run_id}"
    assert body["choices"] == [{"index": 0, "message": {"role": "assistant", "content": ANSWER}, "logprobs": None,
                                "finish_reason": "stop"}]
    assert body["usage"] == {"prompt_tokens": 4, "completion_tokens": 6, "total_tokens": 10}
    sent = standin.requests[-1]
    assert sent.adapter is not None and sent.adapter.run_id == run_id and sent.adapter.step is None
    assert sent.adapter.sha256 == adapter_sha256(session, run_id)
    assert sent.base.name == ids["model"] and sent.base.source == "local"
    assert [m.role for m in sent.messages] == ["system", "user"]
    assert (sent.sampling.temperature, sent.sampling.seed, sent.owner_id) == (0.0, 7, member.id)


def test_a_streamed_chat_completion_on_a_base(client, ids, standin) -> None:  # noqa: ANN001
    response = client.post("/v1/chat/completions", json={"model": ids["model"], "messages": CHAT, "stream": True,
                                                         "stream_options": {"include_usage": True}})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/event-stream")
    events = _events(response)
    assert events[-1] == "[DONE]"
    chunks = events[:-1]
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert len({c["id"] for c in chunks}) == 1
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant"}
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])
    assert text == ANSWER
    assert chunks[-2]["choices"][0]["finish_reason"] == "stop"
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] == 6
    assert standin.requests[-1].adapter is None


def test_completions_whole_and_streamed(client, ids, standin) -> None:  # noqa: ANN001
    whole = client.post("/v1/completions", json={"model": ids["model"], "prompt": ["Once upon"], "max_tokens": 3})
    assert whole.status_code == 200, whole.text
    body = whole.json()
    assert body["object"] == "text_completion" and body["id"].startswith("cmpl-")
    assert body["choices"][0]["text"] == "Hello from the" and body["choices"][0]["finish_reason"] == "length"
    assert standin.requests[-1].prompt == "Once upon" and standin.requests[-1].messages is None
    streamed = client.post("/v1/completions", json={"model": ids["model"], "prompt": "Once", "stream": True})
    events = _events(streamed)
    assert events[-1] == "[DONE]"
    assert "".join(c["choices"][0]["text"] for c in events[:-1]) == ANSWER
    assert events[-2]["choices"][0]["finish_reason"] == "stop" and "usage" not in events[-2]
    two = client.post("/v1/completions", json={"model": ids["model"], "prompt": ["a", "b"]})
    _assert_openai_error(two, 400, "prompt")


def test_sampling_parameters_reach_the_service(client, ids, standin) -> None:  # noqa: ANN001
    parts = [{"role": "developer", "content": [{"type": "text", "text": "Be "}, {"type": "text", "text": "brief."}]},
             {"role": "user", "content": "hi"}]
    assert client.post("/v1/chat/completions", json={"model": ids["model"], "messages": parts}).status_code == 200
    assert standin.requests[-1].messages[0].model_dump() == {"role": "system", "content": "Be brief."}
    base = {"model": ids["model"], "messages": CHAT}
    stopped = client.post("/v1/chat/completions", json={**base, "stop": " the", "max_completion_tokens": 50,
                                                        "top_p": 0.5})
    assert stopped.json()["choices"][0]["message"]["content"] == "Hello from"
    sent = standin.requests[-1].sampling
    assert (sent.stop, sent.max_tokens, sent.top_p) == ((" the",), 50, 0.5)
    capped = client.post("/v1/chat/completions", json={**base, "max_tokens": 2, "stop": ["xyz", "abc"]})
    assert capped.json()["choices"][0]["finish_reason"] == "length"
    assert standin.requests[-1].sampling.stop == ("xyz", "abc")


@pytest.mark.parametrize(("change", "param"), [
    ({"temperature": 3}, "temperature"), ({"temperature": "hot"}, "temperature"), ({"top_p": 0}, "top_p"),
    ({"max_tokens": protocol.MAX_NEW_TOKENS + 1}, "max_tokens"), ({"n": 2}, "n"),
    ({"stop": ["a", "b", "c", "d", "e"]}, "stop"), ({"stop": ""}, "stop"), ({"seed": -1}, "seed"),
    ({"messages": []}, "messages"), ({"messages": [{"role": "tool", "content": "x"}]}, "messages.0.role"),
    ({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {}}]}]},
     "messages.0.content"),
    ({"model": None}, "model"), ({"stream": "sometimes"}, "stream"),
])
def test_bad_parameters_are_a_400_naming_the_parameter(client, ids, standin, change: dict,  # noqa: ANN001
                                                       param: str) -> None:
    body = {"model": ids["model"], "messages": CHAT, **change}
    error = _assert_openai_error(client.post("/v1/chat/completions", json=body), 400, param)
    assert error["type"] == "invalid_request_error"
    assert not standin.requests  # refused before anything was sent


def test_malformed_and_oversized_bodies_are_refused_in_openais_shape(client, ids, standin) -> None:  # noqa: ANN001
    bad_json = client.post("/v1/chat/completions", content=b"{not json", headers={"content-type": "application/json"})
    _assert_openai_error(bad_json, 400)
    missing = client.post("/v1/chat/completions", json={"messages": CHAT})
    _assert_openai_error(missing, 400, "model", "missing_required_parameter")
    huge = client.post("/v1/chat/completions", content=b"x" * (5 * 1024**2),
                       headers={"content-type": "application/json"})
    _assert_openai_error(huge, 413)
    streamed = client.post("/v1/chat/completions", content=(b"x" * 1024**2 for _ in range(5)),  # no Content-Length
                           headers={"content-type": "application/json"})
    _assert_openai_error(streamed, 413, code="request_too_large")
    too_long = [{"role": "user", "content": "x" * protocol.MAX_PROMPT_CHARS}] * 2
    _assert_openai_error(client.post("/v1/chat/completions", json={"model": ids["model"], "messages": too_long}),
                         400, "messages")
    parts = [{"role": "developer", "content": [{"type": "text", "text": "x" * 150_000}] * 2}]
    _assert_openai_error(client.post("/v1/chat/completions", json={"model": ids["model"], "messages": parts}),
                         400, "messages")
    # Elsewhere the studio's own error shape stays.
    studio = client.post("/api/runs", json={"model": 5})
    assert studio.status_code == 422 and "field" in studio.json()["error"]


def test_unknown_models_and_other_users_adapters_read_the_same(as_member, session, ids, admin,  # noqa: ANN001
                                                               member, standin) -> None:
    others = checkpointed_run(session, ids["model_id"], ids["dataset_id"], admin.id)
    queued = checkpointed_run(session, ids["model_id"], ids["dataset_id"], member.id, RunStatus.running)
    for model in ("no-such-model", f"run-{others}", f"run-{others}@step-2", "run-99999999999", "run-2147483647",
                  "run-1@step-99999999999"):
        error = _assert_openai_error(as_member.post("/v1/chat/completions", json={"model": model, "messages": CHAT}),
                                     404, "model", "model_not_found")
        assert model in error["message"] and "does not exist or you do not have access" in error["message"]
    own_unfinished = as_member.post("/v1/completions", json={"model": f"run-{queued}", "prompt": "x"})
    assert "running" in _assert_openai_error(own_unfinished, 404, "model", "model_not_found")["message"]
    assert not standin.requests


def test_without_or_with_a_bad_token_it_is_a_401(app, ids) -> None:  # noqa: ANN001
    with TestClient(app) as anonymous:
        error = _assert_openai_error(anonymous.get("/v1/models"), 401)
        assert error["type"] == "authentication_error"
        bad = anonymous.post("/v1/chat/completions", json={"model": "m", "messages": CHAT},
                             headers={"Authorization": "Bearer nope"})
        _assert_openai_error(bad, 401, code="invalid_token")


def test_a_service_error_is_answered_with_its_status(client, ids, standin) -> None:  # noqa: ANN001
    messages = [{"role": "user", "content": f"too long {FAIL_MARKER}"}]
    for stream in (False, True):
        response = client.post("/v1/chat/completions", json={"model": ids["model"], "messages": messages,
                                                             "stream": stream})
        error = _assert_openai_error(response, 400, code="context_length_exceeded")
        assert "fail marker" in error["message"]


def test_a_generation_under_way_holds_no_database_slot(client, ids, standin, resources, monkeypatch) -> None:  # noqa: ANN001
    monkeypatch.setitem(resources.__dict__, "db_gate", DbGate(1, 0.5))  # one request at a time may use the DB
    slow = {"model": ids["model"], "max_tokens": 8, "messages": [{"role": "user", "content": SLOW_MARKER}]}
    with ThreadPoolExecutor(1) as pool:
        generating = pool.submit(client.post, "/v1/chat/completions", json=slow)
        while not standin.requests:
            time.sleep(0.05)
        assert client.get("/v1/models").status_code == 200  # not a 503 after waiting 0.5 s for the slot
        assert not generating.done()
        assert generating.result().json()["choices"][0]["finish_reason"] == "length"


def test_no_service_is_a_503_at_once_saying_how_to_start_one(client, ids, gen_settings) -> None:  # noqa: ANN001
    started = time.monotonic()
    response = client.post("/v1/chat/completions", json={"model": ids["model"], "messages": CHAT})
    assert time.monotonic() - started < 2
    error = _assert_openai_error(response, 503, code="generation_unavailable")
    assert "lorastudio up" in error["message"] and "python -m worker.generation" in error["message"]
    assert redis.Redis.from_url(GEN_URL).llen(generation_keys(gen_settings).requests) == 0


def test_a_request_no_service_takes_is_withdrawn_after_the_start_timeout(client, ids, gen_settings) -> None:  # noqa: ANN001
    r = redis.Redis.from_url(GEN_URL)
    r.set(generation_keys(gen_settings).presence("silent"), "{}", ex=30)  # present, but never pops anything
    try:
        response = client.post("/v1/completions", json={"model": ids["model"], "prompt": "x"})
    finally:
        r.delete(generation_keys(gen_settings).presence("silent"))
    error = _assert_openai_error(response, 504, code="generation_timeout")
    assert "No generation service took the request" in error["message"]
    assert r.llen(generation_keys(gen_settings).requests) == 0


# --- the official client against a real web process ---------------------------------------------------------------

@pytest.fixture(scope="module")
def studio(resources: Resources, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Committed objects a separate web process can see: two users, a base, each user's adapter."""
    folder = tmp_path_factory.mktemp("openai")
    (folder / "model").mkdir()
    (folder / "model" / "config.json").write_text("{}")
    (folder / "model" / "model.safetensors").write_bytes(b"")
    (folder / "c.jsonl").write_text(json.dumps({"messages": CHAT + [{"role": "assistant", "content": "hi"}]}) + "\n")
    alice, bob = create_account(resources), create_account(resources)
    with session_scope(resources.session_factory) as session:
        base = model_service.register_model(session, f"base-{folder.name}", str(folder / "model"))
        dataset = dataset_service.create_dataset(session, folder / "c.jsonl", "c.jsonl", "c", user=None)
        runs = {who.username: checkpointed_run(session, base.id, dataset.id, who.id) for who in (alice, bob)}
        return {"alice": alice, "bob": bob, "base": base.name, "alice_run": runs[alice.username],
                "bob_run": runs[bob.username]}


@pytest.mark.committed
def test_the_openai_client_drives_the_endpoints(resources: Resources, studio: dict, tmp_path: Path) -> None:
    clear_generation_keys(resources.settings)
    settings = resources.settings.model_copy(update={"redis_url": GEN_URL})
    adapter, base = f"run-{studio['alice_run']}", studio["base"]
    with GenerationStandIn(GEN_URL, keys=generation_keys(settings)) as standin, \
            web_server(settings, tmp_path / "web.log") as (url, _proc):
        client = openai.OpenAI(base_url=f"{url}/v1", api_key=studio["alice"].token, max_retries=0)
        listed = {m.id for m in client.models.list()}
        assert {adapter, base} <= listed and f"run-{studio['bob_run']}" not in listed
        fingerprints = {}
        for model in (adapter, base):
            chat = client.chat.completions.create(model=model, messages=CHAT, max_tokens=20, temperature=0.2)
            assert chat.choices[0].message.content == ANSWER and chat.usage.total_tokens == 10
            fingerprints[model] = chat.system_fingerprint
            stream = client.chat.completions.create(model=model, messages=CHAT, stream=True,
                                                    stream_options={"include_usage": True})
            chunks = list(stream)
            assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == ANSWER
            assert chunks[-1].usage.completion_tokens == 6
        assert fingerprints == {adapter: f"adapter-{standin.requests[0].adapter.sha256[:16]}", base: "base"}
        assert standin.requests[-1].adapter is None
        text = client.completions.create(model=adapter, prompt="Once", max_tokens=2)
        assert text.choices[0].text == "Hello from" and text.choices[0].finish_reason == "length"
        streamed = client.completions.create(model=base, prompt="Once", stream=True)
        assert "".join(c.choices[0].text for c in streamed) == ANSWER

        with pytest.raises(openai.NotFoundError) as unknown:
            client.chat.completions.create(model="no-such-model", messages=CHAT)
        assert unknown.value.code == "model_not_found"
        with pytest.raises(openai.NotFoundError) as others:
            client.chat.completions.create(model=f"run-{studio['bob_run']}", messages=CHAT)
        assert others.value.code == "model_not_found"
        with pytest.raises(openai.BadRequestError) as bad:
            client.chat.completions.create(model=adapter, messages=CHAT, temperature=3)
        assert bad.value.param == "temperature"
        with pytest.raises(openai.AuthenticationError):
            openai.OpenAI(base_url=f"{url}/v1", api_key="wrong", max_retries=0).models.list()

        _assert_cancelled_when_the_reader_leaves(url, studio["alice"], adapter, standin)
        standin.stop()
        time.sleep(1.2)  # the web believes a service's presence for a second
        with pytest.raises(openai.InternalServerError) as gone:
            client.chat.completions.create(model=adapter, messages=CHAT)
        assert gone.value.status_code == 503 and "lorastudio up" in gone.value.message


def _assert_cancelled_when_the_reader_leaves(url: str, account: Account, model: str,
                                             standin: GenerationStandIn) -> None:
    body = {"model": model, "messages": [{"role": "user", "content": SLOW_MARKER}], "stream": True}
    with httpx.stream("POST", f"{url}/v1/chat/completions", json=body, headers=account.headers,
                      timeout=30) as response:
        lines = response.iter_lines()
        while "Hello" not in next(lines):
            pass
    deadline = time.monotonic() + 10
    while not standin.cancelled and time.monotonic() < deadline:
        time.sleep(0.1)
    assert standin.cancelled == [standin.requests[-1].id]
