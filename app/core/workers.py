"""The registry of live training workers and their devices, kept in Redis with a time-to-live."""

from __future__ import annotations

import json
from typing import Any

import redis

PREFIX = "lorastudio:worker:"
TTL_S = 60


def announce(client: redis.Redis, hostname: str, device: dict[str, Any]) -> None:
    """Say this worker is alive and what it trains on (expires unless repeated)."""
    client.set(PREFIX + hostname, json.dumps({"hostname": hostname, **device}), ex=TTL_S)


def live_workers(client: redis.Redis) -> list[dict[str, Any]]:
    """Workers that announced themselves within the last minute; empty if Redis is unreachable."""
    try:
        keys = sorted(client.scan_iter(match=PREFIX + "*", count=100))
        values = client.mget(keys) if keys else []
    except redis.RedisError:
        return []
    return [json.loads(v) for v in values if v]
