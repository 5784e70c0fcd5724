"""Where reply events go: each request's Redis stream (protocol.reply_stream), written in one round trip per
decoding step together with the check of the cancel keys; or a list in memory (direct use, tests)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from typing import Any, Protocol

from app.core.generation import protocol
from app.core.generation.protocol import ReplyEnd, ReplyError, ReplyStart, ReplyToken

Event = ReplyStart | ReplyToken | ReplyEnd | ReplyError


class Replies(Protocol):
    """The decoding loop's outlet: events are buffered by send() and delivered by flush()."""

    def send(self, request_id: str, event: Event) -> None: ...

    def flush(self, watch: Iterable[str] = ()) -> set[str]:
        """Deliver what was sent; returns those of `watch` (request ids) whose caller has cancelled."""
        ...


class RedisReplies:
    """Events appended to the requests' reply streams (expiring REPLY_TTL_S after the last one)."""

    def __init__(self, redis: Any) -> None:
        self.redis = redis
        self.pending: list[tuple[str, Event]] = []

    def send(self, request_id: str, event: Event) -> None:
        self.pending.append((request_id, event))

    def flush(self, watch: Iterable[str] = ()) -> set[str]:
        watch = list(watch)
        pipe = self.redis.pipeline(transaction=False)
        for request_id, event in self.pending:
            stream = protocol.reply_stream(request_id)
            pipe.xadd(stream, {protocol.REPLY_FIELD: event.model_dump_json()})
            pipe.expire(stream, protocol.REPLY_TTL_S)
        if watch:
            pipe.mget([protocol.cancel_key(request_id) for request_id in watch])
        self.pending = []
        results = pipe.execute() if len(pipe) else []
        if not watch:
            return set()
        return {request_id for request_id, value in zip(watch, results[-1], strict=True) if value is not None}


class CollectedReplies:
    """Events kept in memory per request id; ids put in `cancelled` read as cancelled."""

    def __init__(self) -> None:
        self.events: dict[str, list[Event]] = defaultdict(list)
        self.cancelled: set[str] = set()
        self.flushes = 0

    def send(self, request_id: str, event: Event) -> None:
        self.events[request_id].append(event)

    def flush(self, watch: Iterable[str] = ()) -> set[str]:
        self.flushes += 1
        return self.cancelled & set(watch)

    def text(self, request_id: str) -> str:
        """The request's generated text: its token events joined."""
        return "".join(e.text for e in self.events[request_id] if isinstance(e, ReplyToken))

    def last(self, request_id: str) -> Event:
        """The request's final event (ReplyEnd or ReplyError)."""
        return self.events[request_id][-1]
