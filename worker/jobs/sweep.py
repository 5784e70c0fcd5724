"""At a worker's start, remove the work folders that attempts killed earlier left behind (they hold a user's
exported dataset and partial outputs); folders of attempts still running, here or in another worker on this
machine, are held under their lock and stay (worker/jobs/workdir.py)."""

from __future__ import annotations

import logging

from celery.signals import worker_ready

from app.core.config import get_settings
from worker.jobs import workdir

log = logging.getLogger(__name__)


def sweep_stale_work_folders() -> int:
    """Remove this machine's stale job folders; returns how many."""
    removed = workdir.sweep(get_settings().work_dir)
    for folder in removed:
        log.warning("removed the work folder of an attempt that no longer runs: %s", folder)
    return len(removed)


@worker_ready.connect
def _sweep_at_start(**_kwargs) -> None:  # noqa: ANN003
    try:
        sweep_stale_work_folders()
    except OSError:
        log.warning("could not sweep stale work folders", exc_info=True)
