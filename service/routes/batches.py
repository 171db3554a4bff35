"""`/v1/batches`: submit several edits in one request, read how far they are, follow them (HTTP only;
`cmet_jobs.batch_submit` and `cmet_jobs.batches` decide)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Request, Response
from fastapi.responses import StreamingResponse
from pydantic import ValidationError

from cmet_core.errors import ErrorCode
from cmet_jobs import batch_submit, batches, events, schemas
from cmet_jobs.errors import RequestError
from service import offload
from service.deps import KeyDep, NotifierDep, SessionDep, SettingsDep, StorageDep
from service.problems import invalid_request

router = APIRouter(prefix="/v1/batches", tags=["batches"])


@router.post(
    "",
    status_code=202,
    response_model=schemas.Batch,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/BatchCreate"}}},
        }
    },
    responses={202: {"headers": {"Location": {"schema": {"type": "string"}}}}},
)
async def create_batch(
    request: Request,
    response: Response,
    key: KeyDep,
    session: SessionDep,
    settings: SettingsDep,
    storage: StorageDep,
    idempotency_key: Annotated[str | None, Header(min_length=1, max_length=255)] = None,
) -> schemas.Batch:
    """Queue up to `CMET_MAX_BATCH_EDITS` edits at once, each with its own options; 202 with the batch and
    its edits' ids. Refused whole (nothing stored) when any edit is refused, naming it (`edits[i]: ...`),
    or when the key's quotas have no room for all of them. Same `Idempotency-Key` and body -> the same batch."""
    if request.headers.get("content-type", "").split(";")[0].strip().lower() != "application/json":
        raise RequestError(ErrorCode.UNSUPPORTED_MEDIA_TYPE, "send application/json (inputs by URL or asset id)")
    try:
        body = schemas.BatchCreate.model_validate_json(await request.body())
    except ValidationError as exc:
        raise invalid_request(exc) from None
    batch = await offload.submission(
        request, key.id, batch_submit.submit, session, settings, storage, key, body, idempotency_key
    )
    response.headers["Location"] = f"/v1/batches/{batch.id}"
    return batches.to_schema(session, batch)


@router.get("/{batch_id}", response_model=schemas.Batch)
def get_batch(batch_id: str, key: KeyDep, session: SessionDep) -> schemas.Batch:
    """The batch: its edits' ids and how many are in each state."""
    return batches.to_schema(session, batches.owned(session, key, batch_id))


@router.get(
    "/{batch_id}/events",
    response_class=StreamingResponse,
    responses={
        200: {
            "description": "Server-sent events of every edit of the batch (`state`, `progress`, `result`, each "
            "with the edit as JSON, as an edit's own stream sends them), then `batch` with the batch once all "
            "ended (or `error` if the key was revoked).",
            "content": {events.MEDIA_TYPE: {"schema": {"type": "string"}}},
        }
    },
)
def batch_events(
    batch_id: str, key: KeyDep, session: SessionDep, notifier: NotifierDep, storage: StorageDep
) -> StreamingResponse:
    """Follow every edit of a batch on one stream, which counts as one of the key's
    `CMET_EVENT_STREAMS_PER_KEY`."""
    batch = batches.owned(session, key, batch_id)
    watches = notifier.watch_all(key.id, list(batch.edit_ids.get("ids", [])))
    body = events.batch_stream(notifier, storage, watches, batch.id)
    return StreamingResponse(body, media_type=events.MEDIA_TYPE, headers=events.HEADERS)
