"""python -m worker.trainer SPEC --out DIR [--inputs JSON]: run one training job; stdout carries only reports
(worker.planning.reports), one JSON line each."""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import signal
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import TextIO

from worker.planning.inputs import TrainingInputs
from worker.planning.reports import PARENT_PID_ENV, Error, Log
from worker.planning.spec import RunSpec
from worker.trainer import distributed
from worker.trainer.errors import TrainerError
from worker.trainer.sinks import JsonLinesSink, NullSink


def claim_stdout() -> TextIO:
    """The real stdout as a private event stream; fd 1 and sys.stdout then point at stderr.

    Libraries print (progress bars, warnings, C extensions writing to fd 1); none of it may land
    between our JSON lines, which the job runner parses one by one.
    """
    sys.stdout.flush()
    events = os.fdopen(os.dup(1), "w", buffering=1, encoding="utf-8")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    return events


PR_SET_PDEATHSIG = 1  # linux/prctl.h


def die_with_parent() -> None:
    """When spawned by a job runner (its pid in $LORASTUDIO_TRAINER_PARENT), be killed as soon as it dies.

    A worker killed with -9 cannot stop its trainer, which would go on using the device for a run that is
    already being resumed elsewhere. The kernel's parent-death signal (Linux) fires when the thread that
    spawned this process exits; the runner spawns and waits from the same thread, so that is its death.
    """
    parent = os.environ.get(PARENT_PID_ENV)
    if not parent:
        return
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL))
    except (OSError, AttributeError):  # not Linux: the runner's own kill on cancel still applies
        return
    if os.getppid() != int(parent):  # it died before the request took effect
        os._exit(1)


def load_spec(path: Path) -> RunSpec:
    """A RunSpec from a .json or .yaml file."""
    text = path.read_text(encoding="utf-8")
    if path.suffix.lower() == ".json":
        return RunSpec.model_validate(json.loads(text))
    return RunSpec.from_yaml(text)


def _error_fields(exc: BaseException) -> dict[str, str]:
    """Code, actionable message and traceback tail of a failure."""
    tail = "".join(traceback.format_exception(exc))[-4000:]
    if isinstance(exc, TrainerError):
        return {"code": exc.code, "message": exc.message, "traceback": tail}
    if exc.__class__.__name__ == "ValidationError":
        return {"code": "invalid_spec", "message": f"The run spec is not valid: {exc}", "traceback": tail}
    message = f"{type(exc).__name__}: {exc}. The trainer's log (stderr) has the details."
    return {"code": "internal_error", "message": message, "traceback": tail}


def main(argv: list[str] | None = None) -> int:
    """Run the spec; exit 0 when it succeeded or was cancelled cleanly, 1 after an "error" event."""
    parser = argparse.ArgumentParser(prog="python -m worker.trainer", description=__doc__)
    parser.add_argument("spec", type=Path, help="RunSpec as .json or .yaml")
    parser.add_argument("--out", type=Path, required=True, help="output folder (adapter/, checkpoints/)")
    parser.add_argument("--resume", type=Path, help="checkpoint folder of an earlier attempt to continue from")
    parser.add_argument("--inputs", type=Path,
                        help="TrainingInputs as JSON (default: the spec's own model and data.path)")
    args = parser.parse_args(argv)
    die_with_parent()
    events = JsonLinesSink(claim_stdout())
    # Under DDP (worker.trainer.launch) rank 0 reports for the run; any rank's failure is reported (below).
    sink = events if distributed.is_main() else NullSink()
    # The first event, before the heavy imports: queue latency is measured to here (benchmarks/queue_latency.py).
    sink.emit(Log(message=f"trainer process started (pid {os.getpid()})", at=round(time.time(), 3)))
    stop = threading.Event()
    # SIGTERM (the runner's cancel) and Ctrl-C become a clean stop at the next step boundary.
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    try:
        from worker.trainer.loop import train  # heavy imports after the stream is safe

        spec = load_spec(args.spec)
        inputs = TrainingInputs.model_validate_json(args.inputs.read_text()) if args.inputs else None
        train(spec, args.out, sink, stop.is_set, resume_from=args.resume, inputs=inputs)
    except Exception as exc:
        events.emit(Error(**_error_fields(exc)))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
