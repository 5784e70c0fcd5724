"""The studio serves its adapters OpenAI-style, for real: the live studio's web process and generation service
(`python -m worker.generation`, as `lorastudio up` starts it) load the tiny base and a real PEFT adapter, and the
official `openai` client lists them and gets whole and streamed chat completions from each. The adapter's answer
differs from the base's, the answer names the adapter files it came from, and another user finds neither the
adapter nor a way to it."""

from __future__ import annotations

import uuid
from pathlib import Path

import openai
import pytest

from app.core.db import session_scope
from app.core.services import models as model_service
from tests.support.accounts import create_account
from tests.support.adapters import make_adapter, store_adapter, store_step_adapter
from tests.support.studio import LiveStudio

pytestmark = pytest.mark.e2e
CHAT = [{"role": "user", "content": "Say something about the sea."}]


@pytest.fixture(scope="module")
def served(live_studio: LiveStudio, resources, tiny_model_dir: Path,  # noqa: ANN001
           tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """The tiny model registered as a base, and a real adapter on it as the admin's succeeded run: their model ids."""
    with session_scope(resources.session_factory) as session:
        base = model_service.register_model(session, f"tiny-served-{uuid.uuid4().hex[:6]}", str(tiny_model_dir))
        base_id, base_name = base.id, base.name
    folder = make_adapter(tiny_model_dir, tmp_path_factory.mktemp("served") / "adapter", seed=7)
    adapter = store_adapter(resources, folder, base_model_id=base_id, owner_id=None)
    earlier = make_adapter(tiny_model_dir, tmp_path_factory.mktemp("served") / "step", seed=8)
    step = store_step_adapter(resources, adapter.run_id, 10, earlier)  # as a checkpoint of step 10 leaves it
    return {"base": base_name, "adapter": f"run-{adapter.run_id}", "sha256": adapter.sha256,
            "step": f"run-{adapter.run_id}@step-10", "step_sha256": step.sha256}


def _client(live_studio: LiveStudio, token: str) -> openai.OpenAI:
    # The first request loads the base in the service: allow for it on a busy 2-core machine.
    return openai.OpenAI(base_url=f"{live_studio.url}/v1", api_key=token, max_retries=0, timeout=180)


def test_the_openai_client_gets_different_answers_from_an_adapter_and_its_base(
        live_studio: LiveStudio, served: dict[str, str]) -> None:
    client = _client(live_studio, live_studio.token)
    assert {served["base"], served["adapter"]} <= {m.id for m in client.models.list()}
    whole = {}
    for model in (served["base"], served["adapter"]):
        answer = client.chat.completions.create(model=model, messages=CHAT, max_tokens=12, temperature=0, seed=1)
        assert answer.choices[0].finish_reason == "length" and answer.usage.completion_tokens == 12
        assert answer.usage.prompt_tokens > 0 and answer.choices[0].message.content
        whole[model] = answer
    assert whole[served["base"]].system_fingerprint == "base"
    assert whole[served["adapter"]].system_fingerprint == f"adapter-{served['sha256'][:16]}"
    base_text = whole[served["base"]].choices[0].message.content
    adapter_text = whole[served["adapter"]].choices[0].message.content
    assert adapter_text != base_text, "the adapter changed nothing: was it applied?"
    # A stored step is a model of its own: its files are applied, not the final adapter's.
    assert served["step"] in {m.id for m in client.models.list()}
    step = client.chat.completions.create(model=served["step"], messages=CHAT, max_tokens=12, temperature=0, seed=1)
    assert step.model == served["step"] and step.system_fingerprint == f"adapter-{served['step_sha256'][:16]}"
    assert step.choices[0].message.content not in (base_text, adapter_text)

    # Streamed, the same greedy request gives the same text, chunk by chunk, with usage at the end. (The random tiny
    # model may say nothing decodable until its last token, which then comes as one piece: so at least one of the
    # two, not each, must arrive in several chunks.)
    pieces = []
    for model, expected in ((served["base"], base_text), (served["adapter"], adapter_text)):
        stream = client.chat.completions.create(model=model, messages=CHAT, max_tokens=12, temperature=0, seed=1,
                                                stream=True, stream_options={"include_usage": True})
        chunks = list(stream)
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        assert text == expected
        pieces.append(len([c for c in chunks if c.choices and c.choices[0].delta.content]))
        assert chunks[-1].usage.completion_tokens == 12
    assert max(pieces) > 1, f"not streamed: {pieces} content chunks"


def test_another_user_cannot_reach_the_adapter(live_studio: LiveStudio, served: dict[str, str], resources) -> None:  # noqa: ANN001
    stranger = _client(live_studio, create_account(resources).token)
    listed = {m.id for m in stranger.models.list()}
    assert served["base"] in listed and served["adapter"] not in listed and served["step"] not in listed
    for model in (served["adapter"], served["step"]):
        with pytest.raises(openai.NotFoundError) as refused:
            stranger.chat.completions.create(model=model, messages=CHAT, max_tokens=4)
        assert refused.value.body["code"] == "model_not_found"
