"""python -m worker.export INPUTS --out DIR: write one export of an adapter into DIR, verify it by generation and
report a Result listing the files (name, size, sha256) and the verification report; or an Error with the reason.
Progress: Started with total_steps = the number of stages, a Log naming each stage as it begins, a Metric whose
step is the number of stages done."""

from __future__ import annotations

import argparse
import sys
import time
import traceback
from pathlib import Path

from worker.export.exporter import Exporter, ExportFailed, stages
from worker.export.inputs import ExportInputs
from worker.export.llama_cpp_tools import ConversionFailed
from worker.planning.reports import Error, Log, Metric, Result, Started
from worker.trainer.__main__ import claim_stdout, die_with_parent
from worker.trainer.sinks import JsonLinesSink


def main(argv: list[str] | None = None) -> int:
    """Export; exit 0 after a Result, 1 after an Error."""
    parser = argparse.ArgumentParser(prog="python -m worker.export", description=__doc__)
    parser.add_argument("inputs", type=Path, help="ExportInputs (JSON)")
    parser.add_argument("--out", type=Path, required=True, help="the folder to write the export's files into")
    parser.add_argument("--scratch", type=Path, help="a folder for intermediate files (default: beside --out)")
    args = parser.parse_args(argv)
    die_with_parent()
    sink = JsonLinesSink(claim_stdout())
    started = time.monotonic()
    try:
        inputs = ExportInputs.model_validate_json(args.inputs.read_text())
        plan = stages(inputs.format, inputs.trained_4bit)
        sink.emit(Started(device="cpu", total_steps=len(plan)))

        def progress(done: int, stage: str) -> None:
            if done:
                sink.emit(Metric(step=done, elapsed_s=time.monotonic() - started))
            sink.emit(Log(message=stage))

        exporter = Exporter(inputs, args.out, args.scratch or args.out.parent / "scratch", progress)
        files, report = exporter.run()
        sink.emit(Metric(step=len(plan), elapsed_s=time.monotonic() - started))
    except Exception as exc:
        sink.emit(_error(exc))
        return 1
    sink.emit(Result(data={"files": [f.model_dump() for f in files], "report": report}))
    return 0


def _error(exc: Exception) -> Error:
    """The Error report for what stopped the export: its own reason where it has one."""
    tail = "".join(traceback.format_exception(exc))[-4000:]
    if isinstance(exc, ExportFailed):
        return Error(code=exc.code, message=exc.message, traceback=tail)
    if isinstance(exc, ConversionFailed):
        return Error(code="conversion_failed", message=str(exc), traceback=tail)
    return Error(code="internal_error", message=f"{type(exc).__name__}: {exc}", traceback=tail)


if __name__ == "__main__":
    sys.exit(main())
