"""FastAPI dependencies as `Annotated` aliases: settings, a database session, storage, the event notifier,
the caller's key."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.orm import Session

from cmet_core.errors import ErrorCode
from cmet_jobs.db.models import ApiKey
from cmet_jobs.db.session import new_session
from cmet_jobs.errors import RequestError
from cmet_jobs.events import Notifier
from cmet_jobs.keys import find_key
from cmet_jobs.settings import JobsSettings
from cmet_jobs.storage import Storage


def _settings(request: Request) -> JobsSettings:
    settings: JobsSettings = request.app.state.settings
    return settings


def _storage(request: Request) -> Storage:
    storage: Storage = request.app.state.storage
    return storage


def _notifier(request: Request) -> Notifier:
    notifier: Notifier = request.app.state.notifier
    return notifier


def _session(settings: Annotated[JobsSettings, Depends(_settings)]) -> Iterator[Session]:
    """A request's session, which never commits by itself: whatever a route changes, its `cmet_jobs`
    function commits before returning, so a 2xx is durable and the next request sees it. Closed
    (anything uncommitted rolled back) as the route returns, before the answer is sent."""
    session = new_session(settings.db_url)
    try:
        yield session
    finally:
        session.close()


SettingsDep = Annotated[JobsSettings, Depends(_settings)]
StorageDep = Annotated[Storage, Depends(_storage)]
NotifierDep = Annotated[Notifier, Depends(_notifier)]
SessionDep = Annotated[Session, Depends(_session, scope="function")]


def _key(request: Request, session: SessionDep) -> ApiKey:
    header = request.headers.get("authorization", "")
    scheme, _, secret = header.partition(" ")
    if scheme.lower() != "bearer" or not secret.strip():
        raise RequestError(
            ErrorCode.UNAUTHORIZED, "send your API key as `Authorization: Bearer <key>`", {"WWW-Authenticate": "Bearer"}
        )
    key = find_key(session, secret.strip())
    session.commit()  # ends the read: a request waiting for a submission thread holds no pooled connection
    if key is None:
        raise RequestError(ErrorCode.UNAUTHORIZED, "unknown or revoked API key", {"WWW-Authenticate": "Bearer"})
    return key


KeyDep = Annotated[ApiKey, Depends(_key)]


def reject_unknown_query(request: Request) -> None:
    """A misspelt query parameter (`?stat=failed`) is an error, not a silently unfiltered list."""
    route = request.scope.get("route")
    dependant = getattr(route, "dependant", None)
    if dependant is None:
        return
    known = {p.alias for p in dependant.query_params} | {
        p.alias for d in dependant.dependencies for p in d.query_params
    }
    unknown = sorted(set(request.query_params) - known)
    if unknown:
        raise RequestError(ErrorCode.INVALID_REQUEST, f"unknown query parameter(s): {', '.join(unknown)[:200]}")
