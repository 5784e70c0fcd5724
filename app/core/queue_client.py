"""The queue client: send tasks to the workers by name over Celery's protocol, without importing worker code.

The one module of app.core that imports Celery (an import-linter contract says so): the web and the workers' janitor
both send through it, reached as a resource (Resources.job_sender), never a module global."""

from __future__ import annotations

from functools import cached_property
from typing import Any

import redis
from celery import Celery

from app.core.config import Settings
from app.core.jobs import queue_for


class TaskSender:
    """A Celery client that only sends; tasks are named, so the sender never imports the training code."""

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

    @cached_property
    def redis(self) -> redis.Redis:
        """A plain Redis client, to ask which server instance receives the task."""
        return redis.Redis.from_url(self.settings.redis_url, socket_connect_timeout=2, socket_timeout=5)

    def available(self) -> bool:
        """Whether Redis answers a ping within its short timeout."""
        try:
            return bool(self.redis.ping())
        except redis.RedisError:
            return False

    def __call__(self, task_name: str, kwargs: dict[str, Any], device_class: str | None = None) -> str:
        """Send one task to its queue (jobs.queue_for: a training task to its device class's); returns the Redis
        server's run id (it changes on restart)."""
        # Asked before sending: a restart in between then looks like a lost message and is sent again
        # (harmless: runs are claimed atomically), never like a delivered one.
        server = self.redis.info("server")["run_id"]
        self.client.send_task(task_name, kwargs=kwargs, queue=queue_for(self.settings, task_name, device_class),
                              retry=False)
        return server
