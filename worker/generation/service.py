"""The generation service loop: a reader thread pops requests from Redis (Keys.requests) into the batcher, a
presence thread keeps Keys.presence(host) fresh, and the calling thread runs one batch after another.

Stopping (stop(), SIGTERM in __main__): the running batch's unfinished sequences end with a 503 error event at
their next step, and requests received but not started go back to the head of the Redis list for another service.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from typing import Any

import redis
from pydantic import ValidationError

from app.core.generation import protocol
from app.core.generation.protocol import GenerationRequest, ReplyError, ServicePresence
from worker.generation.adapters import Refused
from worker.generation.batcher import Batcher
from worker.generation.engine import Arrival, Engine
from worker.generation.replies import RedisReplies

log = logging.getLogger(__name__)
POP_TIMEOUT_S = 1  # BLPOP's wait, so the reader notices a stop within a second
PRESENCE_EVERY_S = protocol.PRESENCE_TTL_S / 3


def request_id_of(raw: bytes) -> str | None:
    """The id of a request that failed validation, when it has a usable one (to send it its error)."""
    try:
        value = json.loads(raw).get("id")
    except (ValueError, AttributeError):
        return None
    ok = isinstance(value, str) and 0 < len(value) <= 128 and value.isprintable()
    return value if ok else None


class Service:
    """One generation service on one device, serving the requests of `requests_key` (a test gives its own)."""

    def __init__(self, engine: Engine, redis: Any, host: str, max_batch: int = 8,
                 requests_key: str | None = None, backend: str = "transformers",
                 keys: protocol.Keys = protocol.Keys()) -> None:
        self.engine, self.redis, self.host, self.keys = engine, redis, host, keys
        self.requests_key, self.backend = requests_key or keys.requests, backend
        self.batcher = Batcher(max_batch)
        self.replies = RedisReplies(redis)
        self.stopping = threading.Event()
        self.batch_sizes: list[int] = []  # every batch run, for tests and logs
        self._threads: list[threading.Thread] = []
        self._pop_many = True

    def stop(self) -> None:
        """Ask the service to stop (safe from a signal handler or another thread)."""
        self.stopping.set()

    def run(self) -> None:
        """Serve until stop(); then hand back what was received but not started."""
        self._threads = [threading.Thread(target=self._read, name="gen-reader", daemon=True),
                         threading.Thread(target=self._announce, name="gen-presence", daemon=True)]
        for thread in self._threads:
            thread.start()
        # app/stack.py's GENERATION_READY: `lorastudio up` waits for this line.
        log.info("generation service ready: %s serving %s on %s", self.host, self.requests_key, self.engine.device)
        try:
            while not self.stopping.is_set():
                batch = self.batcher.next_batch(timeout=0.5)
                if batch is not None:
                    self._serve(*batch)
        finally:
            self.stopping.set()
            for thread in self._threads:
                thread.join(timeout=POP_TIMEOUT_S + 5)
            self._hand_back()

    def _serve(self, base: Any, arrivals: list[Arrival]) -> None:
        """Run one batch; a failure to reach Redis is logged and the loop goes on."""
        try:
            try:
                loaded = self.engine.base(base)
            except Refused as refused:
                error = ReplyError(status=refused.status, code=refused.code, message=refused.message)
                for arrival in arrivals:
                    self.replies.send(arrival.request.id, error)
                self.replies.flush()
                return
            now, later = loaded.admit(arrivals)
            self.batcher.put(later, front=True)
            self.batch_sizes.append(len(now))
            loaded.run(now, self.replies, should_stop=self.stopping.is_set)
        except Exception:
            log.exception("a batch of %d requests for %s failed", len(arrivals), base.name)
            self.replies.pending = []

    def _read(self) -> None:
        """Pop requests (several at once when they are there) while the batcher is not overfull."""
        while not self.stopping.is_set():
            if len(self.batcher) >= 2 * self.batcher.max_batch:
                time.sleep(0.01)
                continue
            try:
                raws = self._pop()
            except Exception:
                log.warning("could not read generation requests from Redis; retrying", exc_info=True)
                self.stopping.wait(1.0)
                continue
            arrivals = [a for a in (self._parse(raw, time.monotonic()) for raw in raws) if a is not None]
            if arrivals:
                self.batcher.put(arrivals)

    def _pop(self) -> list[bytes]:
        """One request (waiting up to POP_TIMEOUT_S) and those right behind it, up to a batch."""
        popped = self.redis.blpop([self.requests_key], timeout=POP_TIMEOUT_S)
        if popped is None:
            return []
        raws = [popped[1]]
        if self.batcher.max_batch > 1 and self._pop_many:
            try:
                raws += self.redis.lpop(self.requests_key, self.batcher.max_batch - 1) or []
            except redis.ResponseError:  # LPOP with a count needs Redis 6.2; one at a time works too
                self._pop_many = False
        return raws

    def _parse(self, raw: bytes, at: float) -> Arrival | None:
        """The request, or None after answering (400) or logging one that is not a valid request."""
        try:
            return Arrival(GenerationRequest.model_validate_json(raw), at)
        except ValidationError as exc:
            request_id = request_id_of(raw)
            log.warning("invalid generation request %s: %s", request_id, exc.errors(include_url=False)[:3])
            if request_id is not None:
                message = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()[:5])
                error = ReplyError(status=400, code="invalid_request", message=message[:1000])
                self._deliver(request_id, error)
            return None

    def _deliver(self, request_id: str, error: ReplyError) -> None:
        replies = RedisReplies(self.redis)  # a buffer of its own: the batch loop owns self.replies
        replies.send(request_id, error)
        replies.flush()

    def _announce(self) -> None:
        """Refresh this service's presence every few seconds; remove it when stopping."""
        while not self.stopping.is_set():
            presence = ServicePresence(host=self.host, device=self.engine.device, backend=self.backend,
                                       loaded_bases=self.engine.bases.names())
            try:
                self.redis.set(self.keys.presence(self.host), presence.model_dump_json(),
                               ex=protocol.PRESENCE_TTL_S)
            except Exception:
                log.warning("could not refresh the generation service's presence", exc_info=True)
            self.stopping.wait(PRESENCE_EVERY_S)
        try:
            self.redis.delete(self.keys.presence(self.host))
        except Exception:
            log.warning("could not remove the generation service's presence", exc_info=True)

    def _hand_back(self) -> None:
        """Put the requests received but not started back at the head of the list, in their order."""
        left = self.batcher.drain()
        if not left:
            return
        try:
            self.redis.lpush(self.requests_key, *[a.request.model_dump_json() for a in reversed(left)])
            log.info("handed %d requests back to %s", len(left), self.requests_key)
        except Exception:
            log.exception("could not hand %d requests back; they are lost", len(left))
