"""The FastAPI application factory: `create_app(settings)`; `uvicorn service.app:app` uses the environment."""

from __future__ import annotations

from fastapi import Depends, FastAPI

from cmet_core.logs import configure
from cmet_jobs.db.session import migrate
from cmet_jobs.events import Notifier
from cmet_jobs.settings import JobsSettings, get_jobs_settings
from cmet_jobs.storage import S3Storage, storage_for
from service import metrics, offload, page, problems, webhook_docs
from service.body_limit import BodyLimit
from service.deps import reject_unknown_query
from service.head import HeadAsGet
from service.inputs import sweep_scratch
from service.openapi import customize
from service.origin import RequestOrigin
from service.routes import batches, deliveries, edits, emotions, keys, previews, probes, system, uploads

API_VERSION = "1.0.0"


def create_app(settings: JobsSettings | None = None, *, migrate_db: bool = True) -> FastAPI:
    configure()
    settings = settings or get_jobs_settings()
    if migrate_db:
        migrate(settings.db_url)
    sweep_scratch()  # parts saved by an API process that was killed mid-request
    storage = storage_for(settings)
    if isinstance(storage, S3Storage):
        storage.ensure_bucket()
    app = FastAPI(
        title="cmet",
        version=API_VERSION,
        description=(
            "Edit the facial emotion of talking-face videos (C-MET on EDTalk). "
            "Authenticate with `Authorization: Bearer <key>`."
        ),
        dependencies=[Depends(reject_unknown_query)],
        docs_url=None,  # page.docs_router: Swagger UI from a package, under the page's policy
        redoc_url=None,
        openapi_url="/openapi.json" if settings.docs else None,
    )
    app.state.settings = settings
    app.state.storage = storage
    app.state.notifier = Notifier(settings.db_url, settings.event_streams_per_key)
    offload.install(app, settings)
    problems.install(app)
    app.add_middleware(HeadAsGet)
    app.add_middleware(RequestOrigin)
    app.add_middleware(BodyLimit, settings=settings)
    metrics.install(app)
    customize(app)
    app.include_router(edits.router)
    app.include_router(previews.router)
    app.include_router(batches.router)
    app.include_router(deliveries.router)
    app.include_router(deliveries.preview_router)
    app.include_router(uploads.router)
    app.include_router(probes.router)
    app.include_router(emotions.router)
    app.include_router(system.router)
    app.include_router(keys.router)
    webhook_docs.install(app)
    app.include_router(page.router)
    if settings.docs:
        app.include_router(page.docs_router)
    return app


def __getattr__(name: str) -> FastAPI:
    """`service.app:app` for uvicorn, built on first access so importing this module has no side effects."""
    if name == "app":
        return create_app()
    raise AttributeError(name)
