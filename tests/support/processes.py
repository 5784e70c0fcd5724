"""Finding a run's trainer processes from the outside, as a person would with ps."""

from __future__ import annotations

from pathlib import Path


def trainer_pids(work_dir: Path, run_id: int) -> list[int]:
    """Pids of trainer processes working in this run's folder under work_dir (the job runner names it run-<id>-…).

    The work folder is part of the match: other test sessions on this machine have runs with the same ids.
    """
    pids = []
    for entry in Path("/proc").iterdir():
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if "worker.trainer" in cmdline and f"{work_dir}/run-{run_id}-" in cmdline:
            pids.append(int(entry.name))
    return pids
