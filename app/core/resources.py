"""Per-process handles: settings, database engine and sessions, Redis client, object store."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property, lru_cache

import redis
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from app.core import blob_objects, jobs
from app.core.config import Settings, get_settings
from app.core.db import DbGate, make_engine, make_session_factory
from app.core.object_store import ObjectStore
from app.core.queue_client import TaskSender


@dataclass
class Resources:
    """Opened lazily, once per process (web app, worker, test)."""

    settings: Settings = field(default_factory=get_settings)

    @cached_property
    def engine(self) -> Engine:
        """The database engine."""
        return make_engine(self.settings.resolved_database_url, pool_size=self.settings.db_pool_size,
                           pool_timeout_s=self.settings.db_wait_s)

    @cached_property
    def db_gate(self) -> DbGate:
        """The web process's DB slots, one per pooled connection (see DbGate)."""
        return DbGate(self.settings.db_pool_size, self.settings.db_wait_s)

    @cached_property
    def job_sender(self) -> TaskSender:
        """Sends jobs to the workers' queue (connects on first use)."""
        return TaskSender(self.settings)

    @cached_property
    def object_store(self) -> ObjectStore | None:
        """The bucket large blobs' bytes go to (None: the settings name none, every blob is in the database)."""
        return ObjectStore.from_settings(self.settings)

    @cached_property
    def session_factory(self) -> sessionmaker[Session]:
        """Sessions bound to the engine, each sending the jobs it enqueues through job_sender and keeping large
        blobs in object_store."""
        return make_session_factory(self.engine, info={jobs.SENDER_KEY: self.job_sender,
                                                       blob_objects.STORE_KEY: self.object_store})

    @cached_property
    def redis(self) -> redis.Redis:
        """A Redis client with short timeouts, so a dead Redis fails fast instead of hanging requests."""
        return redis.Redis.from_url(self.settings.redis_url, socket_connect_timeout=2, socket_timeout=5)


@lru_cache
def resources() -> Resources:
    """This process's resources."""
    return Resources()
