"""`/v1/edits`: submit, read, list, cancel and delete emotion edits (HTTP only; `cmet_jobs.edits` decides)."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Request, Response
from pydantic import ValidationError
from sqlalchemy.orm import Session
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException

from cmet_core.errors import ErrorCode
from cmet_core.targets import MAX_SPEECH_CLIPS
from cmet_jobs import edits, jobs, schemas
from cmet_jobs.db.models import ApiKey, Job
from cmet_jobs.errors import RequestError
from cmet_jobs.settings import JobsSettings
from cmet_jobs.states import JobState
from cmet_jobs.storage import Storage
from service import offload
from service.deps import KeyDep, SessionDep, SettingsDep, StorageDep
from service.inputs import save_upload, scratch_prefix

router = APIRouter(prefix="/v1/edits", tags=["edits"])

_LIST_FIELDS = ("speech_urls", "speech_assets", "webhook_events")
_BODY_DOC = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": {"$ref": "#/components/schemas/EditCreate"}},
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "description": "The fields of EditCreate as form fields, plus file parts `video` "
                    "and `speech` (repeatable).",
                    "properties": {
                        "video": {"type": "string", "format": "binary"},
                        "speech": {"type": "array", "items": {"type": "string", "format": "binary"}},
                        "emotion": {"type": "string"},
                        "intensity": {"type": "number"},
                        "timeline": {"type": "string", "description": "An EditTimeline as JSON text."},
                    },
                }
            },
        },
    }
}


def _invalid(exc: ValidationError) -> RequestError:
    errors = [{"loc": list(e["loc"]), "msg": e["msg"]} for e in exc.errors()]
    detail = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'body'}: {e['msg']}" for e in errors)
    return RequestError(ErrorCode.INVALID_REQUEST, detail, errors=errors)


async def _read_body(request: Request) -> tuple[schemas.EditCreate, UploadFile | None, list[UploadFile]]:
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind == "multipart/form-data":
        try:
            form = await request.form(max_files=1 + MAX_SPEECH_CLIPS, max_fields=64)
        except HTTPException as exc:  # starlette's multipart limits
            raise RequestError(ErrorCode.INVALID_REQUEST, str(exc.detail)) from None
        fields: dict[str, Any] = {}
        video: UploadFile | None = None
        speech: list[UploadFile] = []
        for name, value in form.multi_items():
            if isinstance(value, UploadFile):
                if name == "video" and video is None:
                    video = value
                elif name == "speech":
                    speech.append(value)
                else:
                    raise RequestError(
                        ErrorCode.INVALID_REQUEST, f"unexpected file part `{name}` (expected `video` once and `speech`)"
                    )
            elif name in _LIST_FIELDS:
                fields.setdefault(name, []).append(value)
            elif name == "face_box":
                fields[name] = [p.strip() for p in value.split(",")]
            else:
                fields[name] = value
        try:
            return schemas.EditCreate.model_validate(fields), video, speech
        except ValidationError as exc:
            raise _invalid(exc) from None
    if kind != "application/json":
        raise RequestError(ErrorCode.UNSUPPORTED_MEDIA_TYPE, "send application/json or multipart/form-data")
    try:
        return schemas.EditCreate.model_validate_json(await request.body()), None, []
    except ValidationError as exc:
        raise _invalid(exc) from None


def _submit(
    session: Session,
    settings: JobsSettings,
    storage: Storage,
    key: ApiKey,
    body: schemas.EditCreate,
    video: UploadFile | None,
    speech: list[UploadFile],
    idempotency_key: str | None,
) -> Job:
    """The parts saved to a scratch folder (size limits, empty parts refused), then `edits.submit`."""
    with tempfile.TemporaryDirectory(prefix=scratch_prefix("req")) as scratch:
        folder = Path(scratch)
        saved = save_upload(video, folder, "video", settings.max_video_bytes) if video is not None else None
        clips = tuple(
            save_upload(part, folder, f"speech{i}", settings.max_speech_bytes) for i, part in enumerate(speech)
        )
        return edits.submit(session, settings, storage, key, edits.Submission(body, saved, clips, idempotency_key))


@router.post(
    "",
    status_code=202,
    response_model=schemas.Job,
    openapi_extra=_BODY_DOC,
    responses={202: {"headers": {"Location": {"schema": {"type": "string"}}}}},
)
async def create_edit(
    request: Request,
    response: Response,
    key: KeyDep,
    session: SessionDep,
    settings: SettingsDep,
    storage: StorageDep,
    idempotency_key: Annotated[str | None, Header(min_length=1, max_length=255)] = None,
) -> schemas.Job:
    """Queue an edit; 202 with the job and its `Location`. Same `Idempotency-Key` and body -> the same job."""
    body, video, speech = await _read_body(request)
    job = await offload.heavy(request, _submit, session, settings, storage, key, body, video, speech, idempotency_key)
    response.headers["Location"] = f"/v1/edits/{job.id}"
    return jobs.to_schema(job, storage)


@router.get("/{job_id}", response_model=schemas.Job)
def get_edit(job_id: str, key: KeyDep, session: SessionDep, storage: StorageDep) -> schemas.Job:
    """The job; for a success, `output_url` is a download signed anew on every read."""
    return jobs.to_schema(edits.owned(session, key, job_id), storage)


@router.get("", response_model=schemas.JobList)
def list_edits(
    key: KeyDep,
    session: SessionDep,
    storage: StorageDep,
    state: Annotated[JobState | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> schemas.JobList:
    """Newest first; pass `next_cursor` back as `cursor` for the next page."""
    page, next_cursor = edits.list_page(session, key, state, limit, cursor)
    return schemas.JobList(data=[jobs.to_schema(j, storage) for j in page], next_cursor=next_cursor)


@router.post("/{job_id}/cancel", response_model=schemas.Job)
def cancel_edit(
    job_id: str, key: KeyDep, session: SessionDep, settings: SettingsDep, storage: StorageDep
) -> schemas.Job:
    """Queued: canceled at once. Running: its worker stops within one chunk of frames and frees the device."""
    return jobs.to_schema(edits.cancel(session, settings, storage, key, job_id), storage)


@router.delete("/{job_id}", status_code=204)
def delete_edit(job_id: str, key: KeyDep, session: SessionDep, storage: StorageDep) -> Response:
    """Removes a finished edit's record and files (409 while it is queued or running: cancel it first)."""
    edits.delete(session, storage, key, job_id)
    return Response(status_code=204)
