"""Child scripts for the job runner's tests: real processes that speak the report protocol."""

from __future__ import annotations

import sys
import textwrap

# Reports a few metrics, then waits; SIGTERM makes it report a clean cancel (as the trainer does), unless it
# was told to ignore SIGTERM. A line of library noise goes to stdout too: it must be skipped, not fatal.
CHILD = textwrap.dedent("""
    import signal, sys, time
    from worker.planning.reports import Finished, Log, Metric
    mode = sys.argv[1]
    stop = []
    signal.signal(signal.SIGTERM, signal.SIG_IGN if mode == "stubborn" else lambda *_: stop.append(1))
    print("some library's progress bar", flush=True)
    for step in (1, 2):
        print(Metric(step=step, loss=1.0 / step).to_json(), flush=True)
    if mode == "crash":
        sys.exit(3)
    if mode in ("quick", "orphan"):
        print(Finished(status="succeeded").to_json(), flush=True)
        if mode == "orphan":  # a grandchild that outlives it and holds its stdout open (a leftover helper)
            import subprocess
            subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"])
        sys.exit(0)
    print(Log(message="waiting").to_json(), flush=True)
    deadline = time.monotonic() + 30
    while not stop and time.monotonic() < deadline:
        time.sleep(0.05)
    print(Finished(status="cancelled").to_json(), flush=True)
""")


def child_argv(mode: str) -> list[str]:
    """argv of the test child in one of its modes: quick, crash, wait, stubborn, orphan."""
    return [sys.executable, "-c", CHILD, mode]
