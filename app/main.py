"""create_app(): the FastAPI application with its API, pages and static files."""

from __future__ import annotations

from pathlib import Path

from fastapi import Depends, FastAPI
from fastapi.staticfiles import StaticFiles

from app.api import analyses, datasets, estimates, events, health, models, openapi, runs
from app.api import errors as api_errors
from app.core.resources import Resources
from app.deps import guard
from app.pages import install as install_pages
from app.uploads import BodySizeLimit

FRONTEND = Path(__file__).resolve().parents[1] / "frontend"


def create_app(res: Resources | None = None) -> FastAPI:
    """Build the app; the database must already be migrated (`lorastudio migrate`)."""
    res = res or Resources()
    # The guard runs before every route: a signed-in user (or a public route), and CSRF on cookie requests.
    app = FastAPI(title="LoRA Studio", version="0.1.0", docs_url=None, redoc_url=None, openapi_url=None,
                  dependencies=[Depends(guard)])
    app.state.resources = res
    api_errors.install(app)
    for router in (health.router, openapi.router, datasets.router, analyses.router, models.router, runs.router,
                   events.router, estimates.router):
        app.include_router(router)
    _mount_pages(app)
    app.add_middleware(BodySizeLimit, limit=res.settings.max_upload_bytes)
    return app


def _mount_pages(app: FastAPI) -> None:
    """HTML pages and their static assets."""
    app.mount("/static", StaticFiles(directory=FRONTEND / "static"), name="static")
    install_pages(app)
