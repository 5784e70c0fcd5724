"""Evaluations through the job runner with a real child: the tiny model, real PEFT adapters, stored results; and
the ways one fails (a judge that times out, a prompt past the context), each with its reason and nothing stored."""

from __future__ import annotations

import http.server
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from types import SimpleNamespace

import pytest

from app.core.db import session_scope
from app.core.models import Evaluation
from app.core.repositories import evaluations as evaluations_repo
from app.core.services import evaluations as evaluation_service
from app.core.services import registry
from tests.evaluation.conftest import CHATS, ROWS, adapter_run, upload
from tests.support.adapters import store_step_adapter
from worker.jobs.evaluation import evaluate


def run_evaluation(res, spec: evaluation_service.EvaluationSpec) -> Evaluation:  # noqa: ANN001
    """Request, claim and compute an evaluation in this process (its child is real); the stored row."""
    with session_scope(res.session_factory) as session:
        evaluation_id = evaluation_service.create_evaluation(session, res.settings, None, spec).id
    with session_scope(res.session_factory) as session:
        attempt = evaluation_service.claim_evaluation(session, evaluation_id)
    assert attempt == 1
    evaluate(res, evaluation_id, attempt)
    with session_scope(res.session_factory) as session:
        evaluation = session.get(Evaluation, evaluation_id)
        session.expunge(evaluation)
    return evaluation


def examples_of(res, evaluation: Evaluation, part: str = "main") -> list:  # noqa: ANN001
    with session_scope(res.session_factory) as session:
        found = evaluations_repo.examples_page(session, evaluation.id, part, 0, 100)
        session.expunge_all()
        return list(found)


def test_an_adapter_is_compared_with_its_base_on_the_same_prompts(client, resources, tiny,  # noqa: ANN001
                                                                    adapter_folders) -> None:
    run_id, sha = adapter_run(resources, adapter_folders["real"], tiny["id"])
    spec = evaluation_service.EvaluationSpec(
        dataset_id=upload(client, ROWS), general_dataset_id=upload(client, CHATS, "general"), model=f"run-{run_id}",
        scorers=["exact", "contains", "regex", "overlap"], max_new_tokens=6)
    evaluation = run_evaluation(resources, spec)
    assert evaluation.status == "succeeded", evaluation.error
    assert evaluation.adapter_sha256 == sha and evaluation.run_id == run_id
    assert evaluation.progress_done == evaluation.progress_total == 2 * (len(ROWS) + len(CHATS))
    main, general = examples_of(resources, evaluation), examples_of(resources, evaluation, "general")
    assert len(main) == len(ROWS) and len(general) == len(CHATS)
    assert {e.adapter_sha256 for e in main + general} == {sha}  # the adapter was applied to every generation
    assert any(e.base_output != e.adapter_output for e in main)
    assert main[0].prompt in {r["prompt"] for r in ROWS} and main[0].reference
    summary = evaluation.summary
    assert summary["adapter_sha256_applied"] == [sha]
    assert summary["main"]["compared"] and not summary["main"]["no_measurable_effect"]
    assert set(summary["main"]["scorers"]) == {"exact", "contains", "regex", "overlap"}
    assert summary["main"]["scorers"]["regex"]["base"]["n"] == 2  # only the rows with a pattern
    assert summary["general"]["n"] == len(CHATS)

    page = client.get(f"/evaluations/{evaluation.id}")
    assert page.status_code == 200 and sha in page.text and 'id="eval-scores"' in page.text
    assert 'id="no-effect"' not in page.text and 'id="general-tab"' in page.text
    body = client.get(f"/api/evaluations/{evaluation.id}", params={"part": "general"}).json()
    assert body["examples_total"] == len(CHATS) and body["summary"]["main"]["n"] == len(ROWS)


def test_an_adapter_that_changes_nothing_is_reported_as_no_measurable_effect(client, resources, tiny,  # noqa: ANN001
                                                                             adapter_folders) -> None:
    run_id, sha = adapter_run(resources, adapter_folders["zero"], tiny["id"])
    spec = evaluation_service.EvaluationSpec(dataset_id=upload(client, ROWS), model=f"run-{run_id}",
                                             scorers=["exact"], max_new_tokens=6)
    evaluation = run_evaluation(resources, spec)
    assert evaluation.status == "succeeded", evaluation.error
    assert evaluation.summary["main"]["no_measurable_effect"]
    assert all(e.base_output == e.adapter_output and e.adapter_sha256 == sha
               for e in examples_of(resources, evaluation))
    page = client.get(f"/evaluations/{evaluation.id}")
    assert 'id="no-effect"' in page.text and "No measurable effect" in page.text


def test_a_step_is_evaluated_with_that_steps_adapter_not_the_final_one(client, resources, tiny,  # noqa: ANN001
                                                                       adapter_folders) -> None:
    run_id, final_sha = adapter_run(resources, adapter_folders["real"], tiny["id"])
    step = store_step_adapter(resources, run_id, 40, adapter_folders["zero"])  # a step that had learned nothing
    spec = evaluation_service.EvaluationSpec(dataset_id=upload(client, ROWS), model=f"run-{run_id}@step-40",
                                             scorers=["exact"], max_new_tokens=6)
    evaluation = run_evaluation(resources, spec)
    assert evaluation.status == "succeeded", evaluation.error
    assert (evaluation.model, evaluation.adapter_sha256) == (f"run-{run_id}@step-40", step.sha256)
    assert step.sha256 != final_sha
    assert evaluation.summary["main"]["no_measurable_effect"]  # the zero step's files, not the final's, applied
    assert {e.adapter_sha256 for e in examples_of(resources, evaluation)} == {step.sha256}


def test_a_registered_version_is_evaluated_through_its_alias(client, resources, tiny,  # noqa: ANN001
                                                              adapter_folders) -> None:
    run_id, final_sha = adapter_run(resources, adapter_folders["real"], tiny["id"])
    with session_scope(resources.session_factory) as session:
        version = registry.register(session, None, registry.Registration(name="evaluated", run_id=run_id))
        registry.set_alias(session, registry.get_adapter(session, None, "evaluated"), "production", 1)
        version_id = version.id
    spec = evaluation_service.EvaluationSpec(dataset_id=upload(client, ROWS), model="evaluated:production",
                                             scorers=["exact"], max_new_tokens=6)
    evaluation = run_evaluation(resources, spec)
    assert evaluation.status == "succeeded", evaluation.error
    assert (evaluation.adapter_version_id, evaluation.adapter_sha256) == (version_id, final_sha)
    assert not evaluation.summary["main"]["no_measurable_effect"]
    assert {e.adapter_sha256 for e in examples_of(resources, evaluation)} == {final_sha}


class SlowJudge(http.server.BaseHTTPRequestHandler):
    """An OpenAI-compatible endpoint that takes far longer than the judge may wait."""

    def do_POST(self) -> None:  # noqa: N802
        time.sleep(3)
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args) -> None:  # noqa: ANN002
        pass


@pytest.fixture
def slow_judge() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), SlowJudge)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    finally:
        server.shutdown()


def test_a_judge_that_times_out_fails_the_job_naming_the_endpoint(client, resources, tiny,  # noqa: ANN001
                                                                  slow_judge) -> None:
    settings = resources.settings.model_copy(update={"judge_base_url": slow_judge, "judge_timeout_s": 0.5})
    res = SimpleNamespace(settings=settings, session_factory=resources.session_factory)
    spec = evaluation_service.EvaluationSpec(dataset_id=upload(client, ROWS[:1]), model=tiny["name"],
                                             scorers=["exact", "judge"], rubric="Is it right?", max_new_tokens=2)
    evaluation = run_evaluation(res, spec)
    assert evaluation.status == "failed"
    assert f"{slow_judge}/chat/completions did not answer within 0.5 s" in evaluation.error
    assert examples_of(resources, evaluation) == [] and evaluation.summary == {}


def test_a_prompt_past_the_context_fails_the_job_naming_its_line(client, resources, tiny) -> None:  # noqa: ANN001
    rows = [ROWS[0], {"prompt": "word " * 700, "completion": "x"}]
    spec = evaluation_service.EvaluationSpec(dataset_id=upload(client, rows), model=tiny["name"], max_new_tokens=4)
    evaluation = run_evaluation(resources, spec)
    assert evaluation.status == "failed"
    assert evaluation.error.startswith("Line 2: The prompt is") and "takes at most 512" in evaluation.error
    assert examples_of(resources, evaluation) == []


def test_the_celery_side_of_evaluations_imports_no_training_library() -> None:
    code = ("import sys, worker.tasks.evaluations, worker.jobs.evaluation; print(sorted(m for m in "
            "('torch', 'transformers', 'peft', 'sacrebleu') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
