"""Liveness and readiness.

/healthz answers from the event loop alone (no thread, no database), so it stays fast however busy the routes
are; /readyz checks the database and Redis, each within READY_TIMEOUT_S, on connections outside the requests'
line (app.core.db.POOL_RESERVE), and reports how busy the database slots are."""

from __future__ import annotations

import anyio
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from sqlalchemy import text

from app.core import schema, workers
from app.core.resources import Resources
from app.deps import ResourcesDep

router = APIRouter(tags=["health"])
READY_TIMEOUT_S = 3.0


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """The process is up (and its event loop turns)."""
    return {"status": "ok"}


@router.get("/api/workers")
def list_workers(res: ResourcesDep) -> list[dict]:
    """Live training workers and their devices (CPU or GPU, memory)."""
    return workers.live_workers(res.redis)


@router.get("/readyz")
async def readyz(request: Request, res: ResourcesDep) -> JSONResponse:
    """Database reachable and migrated, Redis reachable; each check within READY_TIMEOUT_S. Also how busy the
    process is: its database slots (size, in use, requests waiting) and its open live-update streams."""
    checks = {"database": await _within(_database_ok, res), "redis": await _within(_redis_ok, res)}
    ready = all(v == "ok" for v in checks.values())
    gate, hub = res.db_gate, getattr(request.app.state, "live_hub", None)
    body = {"status": "ready" if ready else "not ready", "checks": checks,
            "database_slots": {"size": gate.size, "in_use": gate.in_use(), "waiting": gate.waiting},
            "live_streams": hub.count if hub is not None else 0}
    return JSONResponse(body, status_code=200 if ready else 503)


async def _within(check, res: Resources) -> str:  # noqa: ANN001
    # A thread of its own (not the routes' pool, which may be full); abandoned, not awaited, past the timeout.
    with anyio.move_on_after(READY_TIMEOUT_S):
        return await anyio.to_thread.run_sync(check, res, abandon_on_cancel=True,
                                              limiter=anyio.CapacityLimiter(1))
    return f"no answer within {READY_TIMEOUT_S:g} s"


def _database_ok(res: Resources) -> str:
    try:
        with res.engine.connect() as connection:
            connection.execute(text("SELECT 1"))
        return "ok" if schema.is_current(res.engine) else "migrations pending: run `lorastudio migrate`"
    except Exception as exc:
        return f"unreachable: {type(exc).__name__}"


def _redis_ok(res: Resources) -> str:
    try:
        res.redis.ping()
        return "ok"
    except Exception as exc:
        return f"unreachable: {type(exc).__name__}"
