"""The ASGI app: one router per audience, shared security middleware."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from alerts.jobs import install_job_sender
from alerts.mailer import close_process_mailer
from alerts.regions import load_gazetteer
from alerts.web import admin, api, editor, hooks, public, status
from alerts.web.security import security_middleware
from workers.dispatch import send_job

STATIC_DIR = Path(__file__).parent / "static"


@asynccontextmanager
async def lifespan(_: FastAPI) -> AsyncIterator[None]:
    yield
    close_process_mailer()  # test sends keep an SMTP pool open between requests


def create_app() -> FastAPI:
    # The gazetteer takes about a second to load; load it with the app rather
    # than in the first sign-up form's query check or region lookup.
    load_gazetteer()
    install_job_sender(send_job)
    app = FastAPI(title="alerts", docs_url=None, redoc_url=None, lifespan=lifespan)
    app.middleware("http")(security_middleware)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    app.include_router(status.router)
    app.include_router(public.router)
    app.include_router(admin.router)
    app.include_router(editor.router)
    app.include_router(hooks.router)
    # After the public routes, so the sign-up form's open /api/... endpoints match first.
    app.mount("/api", api.create_api())
    return app
