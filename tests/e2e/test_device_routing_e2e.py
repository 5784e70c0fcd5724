"""Two workers of different device classes, each with a data folder of its own as on two hosts, sharing only the
database and Redis (issue 17: routing by device, many hosts). A run routed to a class is trained by a worker of that
class; one no live worker can take waits; an unrouted run is pinned to the class of the worker that starts it; a
routed run whose worker is killed goes back to its class's queue — the other worker never takes it — and resumes
on the next worker of its class.

The "gpu24" worker trains on this machine's CPU: what is under test is the routing by its class (the queues
`lorastudio worker --device-class gpu24` consumes), not a GPU."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from app.core.models import RunStatus
from tests.support.fleet import make_fleet, wait_for

pytestmark = pytest.mark.e2e
STEPS, SAVE_STEPS = 300, 50


def _routed(fleet, device_class: str | None, steps: int = 40, **training) -> int:  # noqa: ANN001
    spec = fleet.spec(steps, **training)
    if device_class:
        spec["resources"] = {"device_class": device_class}
    return fleet.create_run(spec)


def test_runs_go_to_workers_of_their_class_and_stay_there_on_requeue(settings, tiny_model_dir: Path,
                                                                      tmp_path: Path) -> None:
    fleet = make_fleet(settings, tmp_path / "routing", LORASTUDIO_LOST_AFTER_S="8")
    try:
        fleet.start("cpuhost", device_class="cpu", data_dir=tmp_path / "host-a")
        fleet.start("gpuhost", device_class="gpu24", data_dir=tmp_path / "host-b")
        fleet.wait_ready("cpuhost", "gpuhost")
        fleet.register(tiny_model_dir)

        on_cpu, on_gpu, too_big = _routed(fleet, "cpu"), _routed(fleet, "gpu24"), _routed(fleet, "gpu80")
        for run_id, host in ((on_cpu, "cpuhost"), (on_gpu, "gpuhost")):
            run = fleet.wait_status(run_id, {"succeeded", "failed"})
            assert run.status == "succeeded", (run.error_code, run.error_message, fleet.logs())
            assert run.worker.startswith(f"{host}@"), (run_id, run.worker)
        assert (tmp_path / "host-a").is_dir() and (tmp_path / "host-b").is_dir()  # each worked in its own folder
        waiting = fleet.run(too_big)
        assert waiting.status == RunStatus.queued and waiting.device_class == "gpu80" and waiting.attempts == 0

        # Unrouted: whichever worker starts it pins its class.
        anywhere = _routed(fleet, None)
        run = fleet.wait_status(anywhere, {"succeeded", "failed"})
        assert run.status == "succeeded" and run.device_class == ("cpu" if run.worker.startswith("cpuhost@")
                                                                  else "gpu24")
        assert run.resolved == {"optimizer": "adamw_torch"}  # its "auto" optimizer, fixed once and kept

        # A gpu24 run loses its worker: requeued to training.gpu24, the cpu worker leaves it; a new gpu24 worker
        # (another host) resumes it from its checkpoint.
        victim = _routed(fleet, "gpu24", STEPS, save_steps=SAVE_STEPS)
        wait_for(lambda: fleet.run(victim).current_step >= SAVE_STEPS + 5, 180,
                 lambda: f"run {victim} did not pass its first checkpoint:\n{fleet.logs()}", every=0.1)
        fleet.kill("gpuhost")
        wait_for(lambda: fleet.run(victim).status == RunStatus.queued, 60,
                 lambda: f"run {victim} was not queued again:\n{fleet.logs()}")
        time.sleep(5)  # the cpu worker is idle and consumes the plain queue: it must not take the run
        requeued = fleet.run(victim)
        assert requeued.status == RunStatus.queued and requeued.device_class == "gpu24", fleet.logs()
        fleet.start("gpuhost2", device_class="gpu24", data_dir=tmp_path / "host-c")
        run = fleet.wait_status(victim, {"succeeded", "failed"})
        assert run.status == "succeeded", (run.error_code, run.error_message, fleet.logs())
        assert run.worker.startswith("gpuhost2@") and run.attempts == 2
        resumed = fleet.events(victim, "resumed")
        assert resumed and resumed[0].data["from_step"] >= SAVE_STEPS
        assert fleet.run(too_big).status == RunStatus.queued  # still no gpu80 worker
    finally:
        fleet.cancel_unfinished()
        fleet.stop()
