"""Announce this training worker's device in Redis while it runs, so the run designer can size runs for it; once
the worker has measured its own speed (worker.trainer.calibrate, at its start, in the background), with that too.

A worker that consumes only the short queue (dataset analysis) is no training device and announces nothing."""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys
import threading
from typing import Any

from celery.signals import worker_ready

from app.core import workers
from app.core.config import get_settings
from app.core.resources import Resources
from worker.planning.allocator import AllocatorMissing, trainer_env
from worker.planning.device_classes import CLASS_ENV, class_of
from worker.planning.reports import PARENT_PID_ENV

log = logging.getLogger(__name__)
INTERVAL_S = 20
CALIBRATION_TIMEOUT_S = 600


def _trainer_env() -> dict[str, str]:
    """The environment trainers get here (their heap allocator), so what a child reports is what runs will see."""
    try:
        return trainer_env(os.environ, get_settings().trainer_allocator)
    except AllocatorMissing as exc:  # every run will fail with this message; the device is still worth announcing
        log.error("%s", exc)
        return dict(os.environ)


def detect_device() -> dict:
    """The device description, from a child process (the parent must not initialise CUDA before forking)."""
    out = subprocess.run([sys.executable, "-m", "worker.trainer.device"], capture_output=True, text=True,
                         timeout=120, check=True, env=_trainer_env())
    return json.loads(out.stdout)


def calibrate() -> dict[str, Any]:
    """This machine's measured training speed by method, from a child that trains a small model a few steps."""
    env = _trainer_env() | {PARENT_PID_ENV: str(os.getpid())}  # it dies with this worker
    out = subprocess.run([sys.executable, "-m", "worker.trainer.calibrate"], capture_output=True, text=True,
                         timeout=CALIBRATION_TIMEOUT_S, check=True, env=env)
    return json.loads(out.stdout.strip().splitlines()[-1])


class Announcer:
    """Keeps this worker's registry entry alive: its device, then its measured speed too."""

    def __init__(self, hostname: str, device: dict[str, Any]) -> None:
        self.hostname, self.device = hostname, device
        self.client = Resources().redis  # its own client: a thread of its own beside the jobs' threads
        self.stop = threading.Event()

    def announce(self) -> None:
        """Say it once now; Redis may be away for a while (the next round tries again)."""
        try:
            workers.announce(self.client, self.hostname, self.device)
        except Exception:
            log.warning("could not announce worker %s", self.hostname, exc_info=True)

    def announce_forever(self) -> None:
        """Every INTERVAL_S until stopped (the entry expires a minute after the last)."""
        while not self.stop.is_set():
            self.announce()
            self.stop.wait(INTERVAL_S)

    def calibrate(self) -> None:
        """Measure this machine's speed and announce it (a new dict: the announcing thread may be reading the old)."""
        try:
            calibration = calibrate()
        except Exception:
            log.warning("could not calibrate the training speed; estimates use datasheet figures", exc_info=True)
            return
        log.info("calibrated the training speed: %s", calibration)
        self.device = {**self.device, "calibration": calibration}
        self.announce()


def trains(consumer: Any) -> bool:
    """Whether this worker (worker_ready's sender, its consumer) consumes the training queue; a short one does not."""
    return consumer is None or get_settings().queue in consumer.app.amqp.queues.consume_from


@worker_ready.connect
def start_announcing(sender=None, **_kwargs) -> None:  # noqa: ANN001
    """On a training worker's start: detect the device, announce it periodically, calibrate in the background."""
    if not trains(sender):
        log.info("this worker takes no training jobs: it is not announced as a training device")
        return
    hostname = getattr(sender, "hostname", None) or socket.gethostname()
    try:
        device = detect_device()
    except Exception:
        log.exception("could not detect the training device")
        return
    # The class this worker consumes the queues of (set before Celery started: lorastudio worker / up); the web
    # reads it to say whether a live worker can take a routed run.
    device = {**device, "device_class": os.environ.get(CLASS_ENV) or class_of(device)}
    announcer = Announcer(hostname, device)
    threading.Thread(target=announcer.announce_forever, daemon=True, name="announce").start()
    if get_settings().calibrate:
        threading.Thread(target=announcer.calibrate, daemon=True, name="calibrate").start()
