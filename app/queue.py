"""The web side of the queue: send tasks to the workers by name, without importing worker code."""

from __future__ import annotations

from functools import cached_property
from typing import Any

from celery import Celery

from app.core.config import Settings


class TaskSender:
    """A Celery client that only sends; tasks are named, so the web never imports the training code."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    @cached_property
    def client(self) -> Celery:
        """A Celery app used as a client."""
        client = Celery("lorastudio-web", broker=self.settings.redis_url)
        client.conf.broker_transport_options = {"visibility_timeout": self.settings.visibility_timeout_s}
        client.conf.broker_connection_retry = False
        client.conf.broker_connection_max_retries = 0
        return client

    def __call__(self, task_name: str, kwargs: dict[str, Any]) -> None:
        """Send one task to the training queue."""
        self.client.send_task(task_name, kwargs=kwargs, queue=self.settings.queue, retry=False)
