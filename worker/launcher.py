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
from app.core.services import runs as run_service
from worker.trainer.spec import RunSpec
from worker.trainer_stream import EventReader

log = logging.getLogger(__name__)
ROOT = Path(__file__).resolve().parents[1]
HEARTBEAT_S = 2.0


class Launcher:
    """Owns one claimed run from the trainer's start to the run's end state."""

    def __init__(self, run_id: int, res: Resources) -> None:
        self.run_id, self.res = run_id, res
        self.workdir = res.settings.work_dir / f"run-{run_id}-{uuid.uuid4().hex[:8]}"
        self.final: dict[str, Any] | None = None
        self.finished_status: str | None = None
        self.error: dict[str, Any] | None = None
        self.seq = 0

    def run(self) -> str:
        """Train the run and record how it ended; returns the end status."""
        try:
            spec_path = self._prepare()
        except Exception as exc:  # a broken dataset or model entry must not leave the run "running"
            log.exception("preparing run %s failed", self.run_id)
            return self._finish(RunStatus.failed, error={"code": "prepare_failed", "message": str(exc)})
        try:
            returncode = self._train(spec_path)
            return self._conclude(returncode)
        finally:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def _prepare(self) -> Path:
        """Export the dataset in canonical form and write the spec the trainer reads."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        with session_scope(self.res.session_factory) as session:
            run = session.get(Run, self.run_id)
            dataset = session.get(Dataset, run.dataset_id)
            model = session.get(BaseModelEntry, run.base_model_id)
            raw = blobs.export_to_file(session, dataset.blob_id, self.workdir / f"raw.{dataset.file_type}")
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
        return spec_path

    def _train(self, spec_path: Path) -> int:
        """Spawn the trainer and pump its events until it exits."""
        argv = [sys.executable, "-m", "worker.trainer", str(spec_path), "--out", str(self.workdir / "out")]
        stderr_path = self.workdir / "trainer.log"
        with stderr_path.open("wb") as stderr:
            proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=stderr, cwd=ROOT,
                                    start_new_session=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
            self._pump(proc, EventReader(proc.stdout))
        self.stderr_tail = _tail(stderr_path)
        return proc.returncode

    def _pump(self, proc: subprocess.Popen, reader: EventReader) -> None:
        cancel_sent_at: float | None = None
        next_beat = 0.0
        while True:
            batch = reader.next_batch(timeout=0.2)
            self._handle(batch)
            now = time.monotonic()
            if now >= next_beat:
                next_beat = now + HEARTBEAT_S
                # Beat even after SIGTERM: the trainer may take a while to save the adapter so far.
                if self._beat_and_check_cancel() and cancel_sent_at is None:
                    cancel_sent_at = now
                    _signal(proc, signal.SIGTERM)
            if cancel_sent_at and now - cancel_sent_at > self.res.settings.cancel_grace_s:
                _signal(proc, signal.SIGKILL)
            if reader.done and proc.poll() is not None:
                self._handle(reader.next_batch(timeout=0))
                return

    def _handle(self, batch: list[dict[str, Any]]) -> None:
        metrics: list[tuple[int, dict[str, Any]]] = []
        for event in batch:
            kind = event.get("type")
            if kind == "metric":
                self.seq += 1
                metrics.append((self.seq, event))
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
        if not metrics:
            return
        with session_scope(self.res.session_factory) as session:
            rows = run_service.record_metrics(session, self.run_id, metrics)
            payloads = [events.metric_payload(row) for row in rows]
        for payload in payloads:
            self._publish(payload)

    def _beat_and_check_cancel(self) -> bool:
        """Record that this run is alive; True if someone asked to cancel it."""
        with session_scope(self.res.session_factory) as session:
            runs_repo.touch(session, self.run_id)
            run = session.get(Run, self.run_id)
            return bool(run and run.cancel_requested)

    def _cancel_requested(self) -> bool:
        with session_scope(self.res.session_factory) as session:
            run = session.get(Run, self.run_id)
            return bool(run and run.cancel_requested)

    def _conclude(self, returncode: int) -> str:
        """Store the adapter and set the end state from what the trainer reported."""
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
        with session_scope(self.res.session_factory) as session:
            if store:
                self._store_adapter(session)
            run_service.finish_run(session, self.run_id, status, final=final, error=error)
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
