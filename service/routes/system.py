"""Health, readiness, models and metrics."""

from __future__ import annotations

import hmac
from collections.abc import Callable

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from sqlalchemy import text

from cmet_core.errors import ErrorCode
from cmet_core.modelsets.registry import choose
from cmet_core.modelsets.sets import model_manifest
from cmet_core.networks.errors import ModelLoadError
from cmet_jobs import connectors, jobs, queue, schemas
from cmet_jobs.db.session import session_scope
from cmet_jobs.errors import RequestError
from service import metrics
from service.deps import KeyDep, SettingsDep, StorageDep

router = APIRouter()


@router.get("/healthz", response_model=schemas.Health, tags=["system"])
def healthz() -> schemas.Health:
    """The process is alive."""
    return schemas.Health(status="ok")


@router.get("/readyz", response_model=schemas.Health, tags=["system"], responses={503: {"model": schemas.Health}})
def readyz(settings: SettingsDep, storage: StorageDep) -> JSONResponse:
    """Database, broker and storage reachable and a worker seen recently, unless `ready_needs_workers` is off
    (503 naming what is not)."""
    checks: dict[str, str] = {}
    probes: list[tuple[str, Callable[[], None]]] = [
        ("database", lambda: _ping_db(settings.db_url)),
        ("broker", lambda: queue.ping_broker(settings)),
        ("storage", storage.check),
    ]
    if settings.ready_needs_workers:
        probes.append(("workers", lambda: _workers(settings.db_url)))
    for name, probe in probes:
        try:
            probe()
            checks[name] = "ok"
        except Exception as exc:  # readiness reports every failure instead of raising
            checks[name] = f"{type(exc).__name__}: {exc}"[:200]
    ok = all(v == "ok" for v in checks.values())
    body = schemas.Health(status="ok" if ok else "unavailable", checks=checks)
    return JSONResponse(body.model_dump(), status_code=200 if ok else 503)


def _workers(url: str) -> None:
    with session_scope(url) as session:
        if jobs.workers_seen(session) == 0:
            raise RuntimeError(f"no worker seen in the last {jobs.WORKER_FRESH_S:.0f} s")


def _ping_db(url: str) -> None:
    with session_scope(url) as session:
        session.execute(text("SELECT 1"))


@router.get("/v1/models", response_model=schemas.ModelSetInfo, tags=["models"])
def models(_key: KeyDep, settings: SettingsDep) -> schemas.ModelSetInfo:
    """The model set the workers serve, and which connector: the set's own or a registry version."""

    try:
        path, manifest = connectors.served(settings)
        choice = choose(settings.connector_version, backbone=manifest.backbone)
        own = "connector" in manifest.models
        connector = (
            choice.manifest if choice is not None else model_manifest(path, manifest, "connector")[0] if own else None
        )
    except ModelLoadError as exc:
        raise RequestError(ErrorCode.MODELS_UNAVAILABLE, str(exc)) from None
    infos = [
        schemas.ModelInfo(kind=k, name=e.name, version=e.version, sha256=e.sha256) for k, e in manifest.models.items()
    ]
    info = {"name": manifest.name, "version": manifest.version, "backbone": manifest.backbone}
    if connector is None:
        return schemas.ModelSetInfo(**info, models=infos, connector=None)
    if choice is not None:
        infos = [i for i in infos if i.kind != "connector"] + [
            schemas.ModelInfo(kind="connector", name=connector.name, version=connector.version, sha256=connector.sha256)
        ]
    training = connector.training
    served = schemas.ServedConnector(
        selection=choice.selection if choice is not None else "set",
        name=connector.name,
        version=connector.version,
        sha256=connector.sha256,
        registry=choice.registry.where if choice is not None else None,
        source=connector.source.summary(),
        training_steps=training.steps if training else None,
        parent=training.parent if training else None,
        metrics=training.metrics if training else {},
    )
    return schemas.ModelSetInfo(**info, models=infos, connector=served)


@router.get("/metrics", include_in_schema=False)
def metrics_page(request: Request, settings: SettingsDep) -> Response:
    """Prometheus' page, for the bearer of `CMET_METRICS_TOKEN` only: it counts every key's jobs.
    Without a token set the public API has no such page (404)."""
    if not settings.metrics_token:
        raise RequestError(ErrorCode.NOT_FOUND, "Not Found")
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), settings.metrics_token.encode()):
        raise RequestError(
            ErrorCode.UNAUTHORIZED,
            "send the metrics token as `Authorization: Bearer <token>`",
            {"WWW-Authenticate": "Bearer"},
        )
    return metrics.page(settings)
