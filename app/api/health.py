"""Liveness and readiness."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from sqlalchemy import text
from starlette.concurrency import run_in_threadpool

from app.core import schema, workers
from app.deps import ResourcesDep

router = APIRouter(tags=["health"])


@router.get("/healthz")
def healthz() -> dict[str, str]:
    """The process is up."""
    return {"status": "ok"}


@router.get("/api/workers")
def list_workers(res: ResourcesDep) -> list[dict]:
    """Live training workers and their devices (CPU or GPU, memory)."""
    return workers.live_workers(res.redis)


@router.get("/readyz")
async def readyz(res: ResourcesDep) -> JSONResponse:
    """Database reachable and migrated, Redis reachable."""
    checks = {"database": await run_in_threadpool(_database_ok, res), "redis": await run_in_threadpool(_redis_ok, res)}
    ready = all(v == "ok" for v in checks.values())
    body = {"status": "ready" if ready else "not ready", "checks": checks}
    return JSONResponse(body, status_code=200 if ready else 503)


def _database_ok(res) -> str:  # noqa: ANN001
    try:
        with res.engine.connect() as connection:
            connection.execute(text("SELECT 1"))
        return "ok" if schema.is_current(res.engine) else "migrations pending: run `lorastudio migrate`"
    except Exception as exc:
        return f"unreachable: {type(exc).__name__}"


def _redis_ok(res) -> str:  # noqa: ANN001
    try:
        res.redis.ping()
        return "ok"
    except Exception as exc:
        return f"unreachable: {type(exc).__name__}"
