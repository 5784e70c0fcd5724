"""`lorastudio train SPEC.yaml`: run the trainer on this machine from a spec file, no server involved.

The trainer is spawned and read through the worker's own process code (worker.jobs.child), so the CLI and the
studio's workers run it the same way.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

from pydantic import ValidationError

from app.core.config import get_settings
from app.core.datasets import CanonicalWriter, DatasetProblem, inspect_dataset
from worker.jobs.child import ChildProcess, child_env, module_argv
from worker.planning import safe_yaml
from worker.planning.allocator import AllocatorMissing
from worker.planning.inputs import Provenance, TrainingInputs
from worker.planning.manifest import file_sha256
from worker.planning.reports import Finished
from worker.planning.safe_yaml import YamlLimits, YamlRefused
from worker.planning.spec import RunSpec


def train_from_yaml(spec_file: Path, out: Path) -> str:
    """Validate the spec and its dataset, convert the data to canonical JSONL, and run the trainer."""
    spec = _read_spec(spec_file)
    if not spec.data.path:
        raise SystemExit("data.path must name a local dataset file for `lorastudio train`.")
    source = (spec_file.parent / spec.data.path).resolve()
    if not source.is_file():
        raise SystemExit(f"data.path {source} is not a file; give a .jsonl, .json, .csv or .parquet dataset.")
    try:
        env = child_env(os.environ, get_settings().trainer_allocator)
    except AllocatorMissing as exc:
        raise SystemExit(str(exc)) from None
    with tempfile.TemporaryDirectory(prefix="lorastudio-train-") as tmp:
        data = _canonical_rows(source, Path(tmp))
        origin = Provenance(dataset=source.name, dataset_sha256=file_sha256(source), dataset_rows=data.count)
        inputs = TrainingInputs(model_ref=spec.model.base_model, gguf_file=spec.model.gguf_file,
                                data_path=str(data.rows_path), provenance=origin)
        (Path(tmp) / "inputs.json").write_text(inputs.model_dump_json(), encoding="utf-8")
        (Path(tmp) / "spec.json").write_text(spec.model_dump_json(), encoding="utf-8")
        argv = module_argv("worker.trainer", Path(tmp) / "spec.json", "--inputs", Path(tmp) / "inputs.json",
                           "--out", out.resolve())
        return _stream(ChildProcess(argv, env).start())


def _read_spec(spec_file: Path) -> RunSpec:
    """The spec file read within the studio's bounds (safe_yaml) and validated; exit naming what is wrong."""
    try:
        data = safe_yaml.load_file(spec_file, YamlLimits(max_bytes=get_settings().max_spec_yaml_bytes))
        return RunSpec.model_validate(data or {})
    except YamlRefused as exc:
        raise SystemExit(f"{spec_file}: {exc.code}: {exc}") from None
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'spec'}: {e['msg']}" for e in exc.errors()[:10])
        raise SystemExit(f"{spec_file}: invalid spec: {problems}") from None


def _canonical_rows(source: Path, folder: Path) -> CanonicalWriter:
    """Validate the file and write its canonical rows in the same pass, as an upload does; exit on a bad row."""
    try:
        with CanonicalWriter(folder) as rows:
            inspect_dataset(source, source.name, canonical_out=rows)
    except DatasetProblem as problem:
        where = "".join(f", {k} {v}" for k, v in (("line", problem.line), ("field", problem.field)) if v)
        raise SystemExit(f"{source}: {problem.code}: {problem.message}{where}") from None
    return rows


def _stream(child: ChildProcess) -> str:
    """Echo the trainer's reports as JSON lines; return its final status."""
    status = "failed"
    for report in child.reports():
        sys.stdout.write(report.to_json() + "\n")
        sys.stdout.flush()
        if isinstance(report, Finished):
            status = report.status
    return status if child.wait() == 0 else "failed"
