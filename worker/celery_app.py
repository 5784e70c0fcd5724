"""The Celery app: reliability settings for long training tasks, routed by name (short jobs to the short queue)."""

from __future__ import annotations

from celery import Celery

from app.core.config import get_settings
from app.core.jobs import SHORT_TASKS


def make_celery() -> Celery:
    """A Celery app on the studio's Redis; the database, not Celery, holds job state."""
    settings = get_settings()
    app = Celery("lorastudio", broker=settings.redis_url,
                 include=["worker.tasks.runs", "worker.tasks.datasets", "worker.tasks.evaluations",
                          "worker.tasks.exports", "worker.registry", "worker.janitor", "worker.jobs.sweep"])
    transport = {"visibility_timeout": settings.visibility_timeout_s}
    app.conf.update(
        # A task lost with its worker stays unacknowledged and is delivered again (Redis: after the visibility
        # timeout); the atomic claim makes the redelivery harmless.
        task_acks_late=True,
        worker_prefetch_multiplier=1,
        broker_transport_options=transport,
        result_backend=None,
        task_ignore_result=True,
        broker_connection_retry_on_startup=True,
        worker_hijack_root_logger=False,
        task_default_queue=settings.queue,
        # The web sends by name to jobs.queue_for's queue; the same routes here for anything sent from a worker.
        task_routes={name: {"queue": settings.resolved_short_queue} for name in SHORT_TASKS},
    )
    return app


celery_app = make_celery()
