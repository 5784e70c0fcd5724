"""Run the trainer as a child process: feed it the run's files, stream its events into the DB and Redis."""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from app.core import blobs, events
from app.core.datasets import write_canonical_jsonl
from app.core.db import session_scope
from app.core.models import Artifact, BaseModelEntry, Dataset, Run, RunStatus
from app.core.repositories import runs as runs_repo
from app.core.resources import Resources
from app.core.services import checkpoints
from app.core.services import runs as run_service
from worker.heartbeat import Heartbeat
from worker.trainer.allocator import trainer_env
from worker.trainer.spec import RunSpec
from worker.trainer_stream import EventReader

log = logging.getLogger(__name__)
ROOT = Path(__file__).resolve().parents[1]
# The trainer asks the kernel to kill it when this process dies (worker/trainer/__main__.py: die_with_parent).
TRAINER_PARENT_ENV = "LORASTUDIO_TRAINER_PARENT"


class Launcher:
    """Owns one claimed attempt at a run from the trainer's start to the run's end state."""

    def __init__(self, run_id: int, res: Resources, claim: run_service.Claim) -> None:
        self.run_id, self.res, self.claim = run_id, res, claim
        self.workdir = res.settings.work_dir / f"run-{run_id}-{uuid.uuid4().hex[:8]}"
        self.heartbeat = Heartbeat(res.session_factory, run_id, claim.attempt)
        self.final: dict[str, Any] | None = None
        self.finished_status: str | None = None
        self.error: dict[str, Any] | None = None
        self.failure: dict[str, Any] | None = None  # the launcher's own (storing a checkpoint): it ends the run
        self.seq = 0
        self.env: dict[str, str] = {}  # the trainer's environment (worker.trainer.allocator)

    def run(self) -> str:
        """Train the run and record how it ended; returns the end status."""
        self.heartbeat.start()
        try:
            try:
                argv = self._prepare()
            except Exception as exc:  # a broken dataset or model entry must not leave the run "running"
                log.exception("preparing run %s failed", self.run_id)
                return self._finish(RunStatus.failed, error={"code": "prepare_failed", "message": str(exc)})
            return self._conclude(self._train(argv))
        finally:
            self.heartbeat.stop()
            shutil.rmtree(self.workdir, ignore_errors=True)

    def _prepare(self) -> list[str]:
        """Export the dataset in canonical form (and the checkpoint to resume from); the trainer's argv."""
        self.env = trainer_env(os.environ, self.res.settings.trainer_allocator)  # a missing allocator fails here
        self.workdir.mkdir(parents=True, exist_ok=True)
        with session_scope(self.res.session_factory) as session:
            run = session.get(Run, self.run_id)
            dataset = session.get(Dataset, run.dataset_id)
            model = session.get(BaseModelEntry, run.base_model_id)
            raw = blobs.export_to_file(session, dataset.blob_id, self.workdir / f"raw.{dataset.file_type}")
            resume = checkpoints.export(session, self.run_id, self.workdir / "resume")
            self.seq = runs_repo.last_seq(session, self.run_id)
            spec = RunSpec.model_validate(run.spec)
        data_path = self.workdir / "data.jsonl"
        write_canonical_jsonl(raw, dataset.file_type, dataset.format, data_path)
        raw.unlink()
        spec.data.path = str(data_path)
        spec.model.base_model = model.ref
        spec.model.gguf_file = spec.model.gguf_file or model.gguf_file
        spec_path = self.workdir / "spec.json"
        spec_path.write_text(spec.model_dump_json())
        self._publish_status()
        argv = [sys.executable, "-m", "worker.trainer", str(spec_path), "--out", str(self.workdir / "out")]
        return argv + ["--resume", str(resume)] if resume else argv

    def _train(self, argv: list[str]) -> int:
        """Spawn the trainer and pump its events until it exits."""
        stderr_path = self.workdir / "trainer.log"
        env = {**self.env, "PYTHONUNBUFFERED": "1", TRAINER_PARENT_ENV: str(os.getpid())}
        with stderr_path.open("wb") as stderr:
            proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=stderr, cwd=ROOT, start_new_session=True,
                                    env=env)
            self._pump(proc, EventReader(proc.stdout))
        self.stderr_tail = _tail(stderr_path)
        return proc.returncode

    def _pump(self, proc: subprocess.Popen, reader: EventReader) -> None:
        cancel_sent_at: float | None = None
        killed = False
        while True:
            self._handle(reader.next_batch(timeout=0.2))
            now = time.monotonic()
            if (self.heartbeat.lost or self.failure) and not killed:
                killed = True  # another attempt owns the run, or storing failed: nothing more of this one counts
                _signal(proc, signal.SIGKILL)
            # The heartbeat goes on after SIGTERM: the trainer may take a while to save the adapter so far.
            if self.heartbeat.cancel_requested and cancel_sent_at is None:
                cancel_sent_at = now
                _signal(proc, signal.SIGTERM)
            if cancel_sent_at and now - cancel_sent_at > self.res.settings.cancel_grace_s:
                _signal(proc, signal.SIGKILL)
            if reader.done and proc.poll() is not None:
                self._handle(reader.next_batch(timeout=0))
                return

    def _handle(self, batch: list[dict[str, Any]]) -> None:
        if self.heartbeat.lost or self.failure:
            return
        metrics: list[tuple[int, dict[str, Any]]] = []
        for event in batch:
            kind = event.get("type")
            if kind == "metric":
                self.seq += 1
                metrics.append((self.seq, event))
            elif kind == "checkpoint":
                self._store_metrics(metrics)  # the points up to the checkpoint go first
                metrics = []
                self._store_checkpoint(int(event["step"]), Path(event["path"]))
            elif kind == "started":
                with session_scope(self.res.session_factory) as session:
                    run_service.record_started(session, self.run_id, event)
            elif kind == "finished":
                self.finished_status, self.final = event.get("status"), event.get("final") or {}
            elif kind == "error":
                self.error = event
            elif kind == "log":
                with session_scope(self.res.session_factory) as session:
                    run_service.add_event(session, self.run_id, "log", str(event.get("message", "")))
        self._store_metrics(metrics)

    def _store_metrics(self, metrics: list[tuple[int, dict[str, Any]]]) -> None:
        """Write points (committed first, so SSE history never misses a published point), then publish."""
        if not metrics or self.heartbeat.lost:
            return
        with session_scope(self.res.session_factory) as session:
            rows = run_service.record_metrics(session, self.run_id, metrics)
            payloads = [events.metric_payload(row) for row in rows]
        for payload in payloads:
            self._publish(payload)

    def _store_checkpoint(self, step: int, path: Path) -> None:
        """Move a checkpoint folder out of the trainer's reach and store it; a failure ends the run."""
        folder = self.workdir / "storing" / path.name
        try:
            folder.parent.mkdir(exist_ok=True)
            path.rename(folder)  # the trainer prunes its older folders on its own; this one is ours now
        except OSError:
            log.info("run %s: checkpoint of step %s was pruned before it could be stored", self.run_id, step)
            return
        try:
            with session_scope(self.res.session_factory) as session:
                dropped = checkpoints.store(session, self.run_id, self.claim.attempt, step, folder)
        except checkpoints.IncompleteCheckpoint as exc:  # taken while being pruned: a newer one exists
            log.info("run %s: skipped a checkpoint: %s", self.run_id, exc)
            return
        except checkpoints.NotThisAttempt:
            self.heartbeat.lost = True
            return
        except Exception as exc:
            log.exception("run %s: storing the checkpoint of step %s failed", self.run_id, step)
            self.failure = {"code": "checkpoint_save_failed", "message": f"Storing the checkpoint of step {step} "
                            f"failed ({type(exc).__name__}: {exc}); the run stopped there. Its previous "
                            "checkpoint, if any, is kept whole."}
            return
        finally:
            shutil.rmtree(folder, ignore_errors=True)
        self._collect(dropped)

    def _collect(self, blob_ids: list[int]) -> None:
        """Delete the blobs only dropped checkpoints used (best effort: a leftover only costs space)."""
        try:
            with session_scope(self.res.session_factory) as session:
                checkpoints.collect(session, blob_ids)
        except Exception:
            log.warning("run %s: could not delete unused checkpoint blobs %s", self.run_id, blob_ids, exc_info=True)

    def _cancel_requested(self) -> bool:
        with session_scope(self.res.session_factory) as session:
            run = session.get(Run, self.run_id)
            return bool(run and run.cancel_requested)

    def _conclude(self, returncode: int) -> str:
        """Store the adapter and set the end state from what the trainer reported."""
        if self.heartbeat.lost:
            log.warning("run %s went to another attempt; attempt %s stopped and recorded nothing more",
                        self.run_id, self.claim.attempt)
            return "superseded"
        if self.failure:
            return self._finish(RunStatus.failed, error=self.failure)
        if self.finished_status in ("succeeded", "cancelled") and returncode == 0:
            status = RunStatus(self.finished_status)
            return self._finish(status, final=self.final, store=True)
        error = self.error or {
            "code": "trainer_crashed",
            "message": f"The trainer exited with code {returncode} without reporting an error.",
        }
        if self._cancel_requested():
            return self._finish(RunStatus.cancelled, store=(self.workdir / "out/adapter").is_dir())
        error.setdefault("traceback", self.stderr_tail)
        return self._finish(RunStatus.failed, error=error)

    def _finish(self, status: RunStatus, final: dict | None = None, error: dict | None = None,
                store: bool = False) -> str:
        """The end state, with the adapter when store; checkpoints go once a run has ended well."""
        try:
            with session_scope(self.res.session_factory) as session:
                if store:
                    self._store_adapter(session)
                dropped = checkpoints.drop(session, self.run_id) if status != RunStatus.failed else []
                run_service.finish_run(session, self.run_id, status, final=final, error=error,
                                       attempt=self.claim.attempt)
        except Exception as exc:
            if not store:
                raise
            log.exception("run %s: storing the adapter failed", self.run_id)
            return self._finish(RunStatus.failed, error={
                "code": "adapter_save_failed", "message": f"Storing the adapter failed ({type(exc).__name__}: "
                f"{exc}). The run's newest checkpoint is kept whole."})
        self._collect(dropped)
        self._publish_status()
        return status.value

    def _store_adapter(self, session) -> None:  # noqa: ANN001
        adapter_dir = self.workdir / "out" / "adapter"
        self._describe_studio_inputs(session, adapter_dir)
        for path in sorted(p for p in adapter_dir.rglob("*") if p.is_file()):
            blob = blobs.put_file(session, path, "application/octet-stream")
            name = path.relative_to(adapter_dir).as_posix()
            session.add(Artifact(run_id=self.run_id, kind="adapter", name=name, blob_id=blob.id, size=blob.size))

    def _describe_studio_inputs(self, session, adapter_dir: Path) -> None:  # noqa: ANN001
        """The trainer saw worker-local paths; the download should name the studio's dataset and model instead."""
        run = session.get(Run, self.run_id)
        dataset, model = session.get(Dataset, run.dataset_id), session.get(BaseModelEntry, run.base_model_id)
        (adapter_dir / "spec.yaml").write_text(RunSpec.model_validate(run.spec).to_yaml(), encoding="utf-8")
        card = adapter_dir / "README.md"
        card.write_text(card.read_text(encoding="utf-8") + "\n".join([
            "## In LoRA Studio", "",
            f"- Run {run.id} ({run.name}); `spec.yaml` is the spec as submitted to the studio.",
            f"- Dataset {dataset.id} '{dataset.name}' ({dataset.filename}, {dataset.format}, {dataset.row_count} rows,"
            f" sha256 `{dataset.sha256}` of the uploaded file)",
            f"- Base model '{model.name}': `{model.ref}`", "",
        ]), encoding="utf-8")

    def _publish_status(self) -> None:
        with session_scope(self.res.session_factory) as session:
            payload = events.status_payload(session.get(Run, self.run_id))
        self._publish(payload)

    def _publish(self, payload: dict[str, Any]) -> None:
        try:
            self.res.redis.publish(events.run_channel(self.run_id), events.encode(payload))
        except Exception:  # live view only; the database already holds the point
            log.warning("could not publish to Redis for run %s", self.run_id, exc_info=True)


def _signal(proc: subprocess.Popen, sig: int) -> None:
    """Signal the trainer's whole process group (it may have children, e.g. data workers)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, sig)


def _tail(path: Path, limit: int = 4000) -> str:
    data = path.read_bytes() if path.exists() else b""
    return data[-limit:].decode("utf-8", "replace")
