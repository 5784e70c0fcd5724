"""The recorder stores a run's Samples reports; the API gives them back per prompt in timeline order (base, each
sampled step, final), a later attempt's rounds replace an earlier one's, and a skipped round reaches the timeline."""

from __future__ import annotations

from pathlib import Path

from app.core.models import Run, RunStatus
from worker.heartbeat import Heartbeat
from worker.jobs.recorder import RunRecorder
from worker.planning.reports import Sample, Samples

PROMPTS = [("What is the capital of France?", "Paris."), ("Say hello.", "Hello!")]


def _round(kind: str, step: int, outputs: list[str], train_s: float, resumed_from: int = 0) -> Samples:
    samples = [Sample(index=i, prompt=p, reference=r, output=o, seconds=0.5)
               for i, ((p, r), o) in enumerate(zip(PROMPTS, outputs, strict=True))]
    return Samples(kind=kind, step=step, samples=samples, seconds=1.0, sampling_s=1.0, train_s=train_s, budget=0.1,
                   resumed_from=resumed_from)


def _running_run(resources, ids: dict) -> int:  # noqa: ANN001
    spec = {"model": {"base_model": ids["model"]}, "data": {"dataset_id": ids["dataset_id"]}}
    with resources.session_factory() as session:
        run = Run(name="sampled", status=RunStatus.running, method="lora", spec=spec, dataset_id=ids["dataset_id"],
                  base_model_id=ids["model_id"], attempts=1)
        session.add(run)
        session.commit()
        return run.id


def test_recorded_samples_come_back_from_the_api_in_order(client, resources, ids, tmp_path: Path) -> None:
    run_id = _running_run(resources, ids)
    recorder = RunRecorder(resources, Heartbeat(resources.session_factory, run_id, 1), tmp_path)
    recorder.record([_round("base", 0, ["Hi.", "Hey."], 0.0), _round("eval", 4, ["Paris", "Hello"], 10.0)])
    recorder.record([Samples(kind="eval", step=8, skipped="budget", sampling_s=2.0, train_s=18.0, budget=0.1),
                     _round("final", 10, ["Paris.", "Hello!"], 20.0)])
    body = client.get(f"/api/runs/{run_id}/samples").json()
    assert [(p["index"], p["prompt"], p["reference"]) for p in body["prompts"]] == [(0, *PROMPTS[0]), (1, *PROMPTS[1])]
    assert [(a["kind"], a["step"], a["output"]) for a in body["prompts"][0]["answers"]] == [
        ("base", 0, "Hi."), ("eval", 4, "Paris"), ("final", 10, "Paris.")]
    assert body["sampling_s"] == 3.0 and body["train_s"] == 20.0 and body["share"] == 0.15
    assert body["no_effect"] is False
    timeline = [e["message"] for e in client.get(f"/api/runs/{run_id}/timeline").json()]
    assert any("Samples at step 8 skipped" in m and "budget of 10%" in m for m in timeline), timeline

    # A later attempt resumed from step 4: its base round drops what the first sampled past step 4.
    recorder.record([_round("base", 0, ["Hi.", "Hey."], 0.0, resumed_from=4)])
    answers = client.get(f"/api/runs/{run_id}/samples").json()["prompts"][1]["answers"]
    assert [(a["kind"], a["step"]) for a in answers] == [("base", 0), ("eval", 4)]


def test_an_unknown_run_has_no_samples(client, resources, ids) -> None:
    assert client.get("/api/runs/999999/samples").status_code == 404
