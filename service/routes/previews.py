"""`/v1/previews`: contact sheets (submit here) and clip previews (submit as an edit with `preview_s`),
read, listed apart from edits, canceled and deleted (HTTP only; `cmet_jobs.previews` and `edits` decide)."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Request, Response
from fastapi.responses import StreamingResponse
from pydantic import ValidationError
from sqlalchemy.orm import Session
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException

from cmet_core.errors import ErrorCode
from cmet_jobs import events, jobs, previews, schemas, submissions
from cmet_jobs.db.models import ApiKey, JobRow
from cmet_jobs.errors import RequestError
from cmet_jobs.settings import JobsSettings
from cmet_jobs.states import JobState
from cmet_jobs.storage import Storage
from service import offload, prefer
from service.deps import KeyDep, NotifierDep, SessionDep, SettingsDep, StorageDep
from service.inputs import save_upload, scratch_prefix
from service.problems import invalid_request

router = APIRouter(prefix="/v1/previews", tags=["previews"])

_LIST_FIELDS = ("emotions", "intensities", "webhook_events")
_BODY_DOC = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": {"$ref": "#/components/schemas/PreviewCreate"}},
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "description": "The fields of PreviewCreate as form fields (`emotions` and `intensities` "
                    "repeated, one per row or column), plus the file part `video`.",
                    "properties": {
                        "video": {"type": "string", "format": "binary"},
                        "emotions": {"type": "array", "items": {"type": "string"}},
                        "intensities": {"type": "array", "items": {"type": "number"}},
                        "frame": {"type": "integer"},
                    },
                }
            },
        },
    }
}


async def _read_body(request: Request) -> tuple[schemas.PreviewCreate, UploadFile | None]:
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind == "application/json":
        try:
            return schemas.PreviewCreate.model_validate_json(await request.body()), None
        except ValidationError as exc:
            raise invalid_request(exc) from None
    if kind != "multipart/form-data":
        raise RequestError(ErrorCode.UNSUPPORTED_MEDIA_TYPE, "send application/json or multipart/form-data")
    try:
        form = await request.form(max_files=1, max_fields=64)
    except HTTPException as exc:  # starlette's multipart limits
        raise RequestError(ErrorCode.INVALID_REQUEST, str(exc.detail)) from None
    fields: dict[str, Any] = {}
    video: UploadFile | None = None
    for name, value in form.multi_items():
        if isinstance(value, UploadFile):
            if name != "video" or video is not None:
                raise RequestError(ErrorCode.INVALID_REQUEST, f"unexpected file part `{name}` (expected `video` once)")
            video = value
        elif name in _LIST_FIELDS:
            fields.setdefault(name, []).append(value)
        elif name == "face_box":
            fields[name] = [p.strip() for p in value.split(",")]
        else:
            fields[name] = value
    try:
        return schemas.PreviewCreate.model_validate(fields), video
    except ValidationError as exc:
        raise invalid_request(exc) from None


def _submit(
    session: Session,
    settings: JobsSettings,
    storage: Storage,
    key: ApiKey,
    body: schemas.PreviewCreate,
    video: UploadFile | None,
    idempotency_key: str | None,
) -> JobRow:
    with tempfile.TemporaryDirectory(prefix=scratch_prefix("req")) as scratch:
        saved = save_upload(video, Path(scratch), "video", settings.max_video_bytes) if video is not None else None
        submission = previews.SheetSubmission(body, saved, idempotency_key)
        return previews.submit(session, settings, storage, key, submission)


@router.post(
    "",
    status_code=202,
    response_model=schemas.Preview,
    openapi_extra=_BODY_DOC | {"parameters": [prefer.HEADER_DOC]},
    responses={
        202: {"headers": {"Location": {"schema": {"type": "string"}}}},
        200: {
            "description": "With `Prefer: wait=N`: the preview ended within N seconds (any final state).",
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Preview"}}},
        },
    },
)
async def create_preview(
    request: Request,
    response: Response,
    key: KeyDep,
    session: SessionDep,
    settings: SettingsDep,
    storage: StorageDep,
    idempotency_key: Annotated[str | None, Header(min_length=1, max_length=255)] = None,
) -> schemas.Preview:
    """Queue a contact sheet on the preview queue; 202 with the preview and its `Location`. Same
    `Idempotency-Key` and body -> the same job. (A clip preview is `POST /v1/edits` with `preview_s`.)"""
    body, video = await _read_body(request)
    job = await offload.submission(
        request, key.id, _submit, session, settings, storage, key, body, video, idempotency_key
    )
    response.headers["Location"] = f"/v1/previews/{job.id}"
    shown = await prefer.answer(request.headers.get("prefer"), settings, storage, job, response, jobs.to_preview)
    assert isinstance(shown, schemas.Preview)
    return shown


@router.get("/{job_id}", response_model=schemas.Preview)
def get_preview(job_id: str, key: KeyDep, session: SessionDep, storage: StorageDep) -> schemas.Preview:
    """The preview; once it succeeded, `sheet_url` and `cells` (a sheet) or `output_url` (a clip) are
    downloads signed anew on every read."""
    return jobs.to_preview(submissions.owned(session, key, job_id, family=submissions.PREVIEWS), storage)


@router.get(
    "/{job_id}/events",
    response_class=StreamingResponse,
    responses={
        200: {
            "description": "Server-sent events `state`, `progress` and, last, `result` (or `error` if the preview "
            "was deleted), each with the preview as JSON in `data`.",
            "content": {events.MEDIA_TYPE: {"schema": {"type": "string"}}},
        }
    },
)
def preview_events(
    job_id: str, key: KeyDep, session: SessionDep, notifier: NotifierDep, storage: StorageDep
) -> StreamingResponse:
    """Follow a preview without polling, as `GET /v1/edits/{id}/events` follows an edit (the same limit
    of open streams per key)."""
    family = submissions.PREVIEWS
    submissions.owned(session, key, job_id, family=family)
    watch = notifier.watch(key.id, job_id)
    body = events.stream(notifier, storage, watch, jobs.to_preview, family.missing)
    return StreamingResponse(body, media_type=events.MEDIA_TYPE, headers=events.HEADERS)


@router.get("", response_model=schemas.PreviewList)
def list_previews(
    key: KeyDep,
    session: SessionDep,
    storage: StorageDep,
    state: Annotated[JobState | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> schemas.PreviewList:
    """Clip previews and contact sheets, newest first (never full edits); pass `next_cursor` back as `cursor`."""
    page, next_cursor = submissions.list_page(session, key, state, limit, cursor, submissions.PREVIEWS)
    return schemas.PreviewList(data=[jobs.to_preview(j, storage) for j in page], next_cursor=next_cursor)


@router.post("/{job_id}/cancel", response_model=schemas.Preview)
def cancel_preview(
    job_id: str, key: KeyDep, session: SessionDep, settings: SettingsDep, storage: StorageDep
) -> schemas.Preview:
    """Queued: canceled at once. Running: its worker stops at its next step."""
    return jobs.to_preview(submissions.cancel(session, settings, storage, key, job_id, submissions.PREVIEWS), storage)


@router.delete("/{job_id}", status_code=204)
def delete_preview(job_id: str, key: KeyDep, session: SessionDep, storage: StorageDep) -> Response:
    """Removes a finished preview's record and files (409 while it is queued or running: cancel it first)."""
    submissions.delete(session, storage, key, job_id, submissions.PREVIEWS)
    return Response(status_code=204)
