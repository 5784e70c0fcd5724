"""Fail runs whose worker vanished (no heartbeat), from a thread in every worker's main process."""

from __future__ import annotations

import logging
import threading
from datetime import timedelta

from celery.signals import worker_ready

from app.core.db import session_scope
from app.core.resources import resources
from app.core.services.runs import reap_lost_runs

log = logging.getLogger(__name__)
INTERVAL_S = 15


def sweep() -> list[int]:
    """One pass: fail the runs that stopped beating; returns their ids."""
    res = resources()
    with session_scope(res.session_factory) as session:
        reaped = reap_lost_runs(session, timedelta(seconds=res.settings.lost_after_s))
    for run_id in reaped:
        log.warning("run %s lost its worker (no heartbeat for %ss); marked failed", run_id, res.settings.lost_after_s)
    return reaped


def _sweep_forever(stop: threading.Event) -> None:
    while not stop.wait(INTERVAL_S):
        try:
            sweep()
        except Exception:  # the database may be away for a while; try again next round
            log.warning("janitor sweep failed", exc_info=True)


@worker_ready.connect
def start_janitor(**_kwargs) -> None:  # noqa: ANN003
    """Sweep periodically while this worker runs (several workers sweeping is harmless: the update is atomic)."""
    threading.Thread(target=_sweep_forever, args=(threading.Event(),), daemon=True, name="janitor").start()
