"""create_app(): the FastAPI application with its API, pages and static files."""

from __future__ import annotations

from pathlib import Path

from fastapi import Depends, FastAPI
from fastapi.staticfiles import StaticFiles

from app.api import (
    adapters,
    analyses,
    audit,
    datasets,
    estimates,
    evaluations,
    events,
    exports,
    health,
    models,
    openai_compat,
    openapi,
    playground,
    presets,
    runs,
    samples,
    users,
)
from app.api import errors as api_errors
from app.api import me as me_api
from app.core.resources import Resources
from app.deps import guard, web_lifespan
from app.login_guard import LoginGuards
from app.pages import install as install_pages
from app.security_headers import SecurityHeaders
from app.uploads import BodySizeLimit, sweep_spool

FRONTEND = Path(__file__).resolve().parents[1] / "frontend"


def create_app(res: Resources | None = None) -> FastAPI:
    """Build the app; the database must already be migrated (`lorastudio migrate`)."""
    res = res or Resources()
    # The guard runs before every route: a signed-in user (or a public route), and CSRF on cookie requests.
    app = FastAPI(title="LoRA Studio", version="0.1.0", docs_url=None, redoc_url=None, openapi_url=None,
                  dependencies=[Depends(guard)], lifespan=web_lifespan)
    app.state.resources = res
    app.state.login_guards = LoginGuards.of(res.settings)  # sign-in limits and password-checking slots
    api_errors.install(app)
    for router in (health.router, openapi.router, datasets.router, analyses.router, models.router, runs.router,
                   events.router, estimates.router, presets.router, audit.router, users.router,
                   me_api.router, playground.router, samples.router, evaluations.router, adapters.router,
                   exports.router):
        app.include_router(router)
    _mount_pages(app)
    # After the pages: it wraps their error handlers, answering /v1 paths in OpenAI's shape.
    openai_compat.install(app, res.settings.openai_max_body_bytes)
    app.add_middleware(BodySizeLimit, limit=res.settings.max_upload_bytes)
    sweep_spool(res.settings)  # uploads a killed process left half-received
    app.add_middleware(SecurityHeaders)  # outermost: error responses of the inner layers get the headers too
    return app


def _mount_pages(app: FastAPI) -> None:
    """HTML pages and their static assets."""
    app.mount("/static", StaticFiles(directory=FRONTEND / "static"), name="static")
    install_pages(app)
