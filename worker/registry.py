"""Announce this worker's device in Redis while it runs, so the run designer can size runs for it."""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys
import threading

from celery.signals import worker_ready

from app.core import workers
from app.core.config import get_settings
from app.core.resources import Resources
from worker.planning.allocator import AllocatorMissing, trainer_env

log = logging.getLogger(__name__)
INTERVAL_S = 20


def detect_device() -> dict:
    """The device description, from a child process (the parent must not initialise CUDA before forking).

    The child runs in a trainer's environment, so the allocator it reports is the one runs here will get.
    """
    try:
        env = trainer_env(os.environ, get_settings().trainer_allocator)
    except AllocatorMissing as exc:  # every run will fail with this message; the device is still worth announcing
        log.error("%s", exc)
        env = dict(os.environ)
    out = subprocess.run([sys.executable, "-m", "worker.trainer.device"], capture_output=True, text=True,
                         timeout=120, check=True, env=env)
    return json.loads(out.stdout)


def _announce_forever(hostname: str, device: dict, stop: threading.Event) -> None:
    client = Resources().redis  # its own client, not the one forked pool children inherit
    while not stop.is_set():
        try:
            workers.announce(client, hostname, device)
        except Exception:  # Redis may be away for a while; try again next round
            log.warning("could not announce worker %s", hostname, exc_info=True)
        stop.wait(INTERVAL_S)


@worker_ready.connect
def start_announcing(sender=None, **_kwargs) -> None:  # noqa: ANN001
    """On worker start: detect the device once, then refresh the registry entry periodically."""
    hostname = getattr(sender, "hostname", None) or socket.gethostname()
    try:
        device = detect_device()
    except Exception:
        log.exception("could not detect the training device")
        return
    threading.Thread(target=_announce_forever, args=(hostname, device, threading.Event()), daemon=True).start()
