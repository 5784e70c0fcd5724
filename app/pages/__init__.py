"""Server-rendered HTML pages: one router per resource, plus HTML error pages for non-API paths."""

from __future__ import annotations

from fastapi import FastAPI

from app.pages import (
    account,
    adapters,
    compare,
    datasets,
    designer,
    errors,
    evaluations,
    login,
    models,
    playground,
    runs,
)


def install(app: FastAPI) -> None:
    """Add the page routers and the HTML error handlers (API paths keep their JSON errors)."""
    # The designer and compare go first: /runs/new and /runs/compare must win over /runs/{run_id}.
    for router in (designer.router, compare.router, runs.router, datasets.router, models.router, login.router,
                   account.router, playground.router, evaluations.router, adapters.router):
        app.include_router(router, include_in_schema=False)
    errors.install(app)
