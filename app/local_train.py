"""`lorastudio train SPEC.yaml`: run the trainer on this machine from a spec file, no server involved."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from app.core.config import get_settings
from app.core.datasets import DatasetProblem, inspect_dataset, write_canonical_jsonl
from worker.trainer.allocator import AllocatorMissing, trainer_env
from worker.trainer.spec import RunSpec

ROOT = Path(__file__).resolve().parents[1]


def train_from_yaml(spec_file: Path, out: Path) -> str:
    """Validate the spec and its dataset, convert the data to canonical JSONL, and run the trainer."""
    spec = RunSpec.from_yaml(spec_file.read_text())
    if not spec.data.path:
        raise SystemExit("data.path must name a local dataset file for `lorastudio train`.")
    source = (spec_file.parent / spec.data.path).resolve()
    try:
        info = inspect_dataset(source, source.name)
    except DatasetProblem as problem:
        where = "".join(f", {k} {v}" for k, v in (("line", problem.line), ("field", problem.field)) if v)
        raise SystemExit(f"{source}: {problem.code}: {problem.message}{where}") from None
    with tempfile.TemporaryDirectory(prefix="lorastudio-train-") as tmp:
        data = Path(tmp) / "data.jsonl"
        write_canonical_jsonl(source, info.file_type, info.format, data)
        spec.data.path = str(data)
        spec_path = Path(tmp) / "spec.json"
        spec_path.write_text(spec.model_dump_json())
        argv = [sys.executable, "-m", "worker.trainer", str(spec_path), "--out", str(out.resolve())]
        try:
            env = trainer_env(os.environ, get_settings().trainer_allocator)
        except AllocatorMissing as exc:
            raise SystemExit(str(exc)) from None
        return _stream(argv, env)


def _stream(argv: list[str], env: dict[str, str]) -> str:
    """Echo the trainer's event lines; return its final status."""
    status = "failed"
    with subprocess.Popen(argv, stdout=subprocess.PIPE, cwd=ROOT, text=True, env=env) as proc:
        for line in proc.stdout:
            sys.stdout.write(line)
            event = json.loads(line)
            if event.get("type") == "finished":
                status = event.get("status", status)
    return status if proc.returncode == 0 else "failed"
