"""`/v1/edits`: submit, read, list, cancel and delete emotion edits (HTTP only; `cmet_jobs.submissions` decides)."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Request, Response
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import ValidationError
from sqlalchemy.orm import Session
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException

from cmet_core.emotion.targets import MAX_SPEECH_CLIPS
from cmet_core.errors import ErrorCode
from cmet_jobs import events, jobs, schemas, submissions
from cmet_jobs.db.models import ApiKey, JobRow
from cmet_jobs.errors import RequestError
from cmet_jobs.settings import JobsSettings
from cmet_jobs.states import JobState
from cmet_jobs.storage import Storage
from service import offload, prefer
from service.deps import KeyDep, NotifierDep, SessionDep, SettingsDep, StorageDep
from service.inputs import save_upload, scratch_prefix
from service.problems import invalid_request

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
                    "(a video, or a photo to animate), `speech` (repeatable), `expression_reference` (a photo or "
                    "short clip of a face making the wanted expression), for a dub `speech_track` and "
                    "`pose_video`, and for gaze or blink `clip` `eye_video`.",
                    "properties": {
                        "video": {"type": "string", "format": "binary"},
                        "speech_track": {"type": "string", "format": "binary"},
                        "pose_video": {"type": "string", "format": "binary"},
                        "expression_reference": {"type": "string", "format": "binary"},
                        "eye_video": {"type": "string", "format": "binary"},
                        "lips": {"type": "string", "enum": ["video", "speech"]},
                        "speech": {"type": "array", "items": {"type": "string", "format": "binary"}},
                        "emotion": {"type": "string"},
                        "intensity": {"type": "number"},
                        "timeline": {"type": "string", "description": "An EditTimeline as JSON text."},
                        "faces": {"type": "string", "description": "The `faces` list (FaceTarget items) as JSON text."},
                    },
                }
            },
        },
    }
}


_SINGLE_PARTS = ("video", "speech_track", "pose_video", "expression_reference", "eye_video")


def _json_field(name: str, value: str) -> Any:
    """A form field that carries JSON (`faces`)."""
    try:
        return json.loads(value)
    except json.JSONDecodeError as exc:
        raise RequestError(ErrorCode.INVALID_REQUEST, f"{name} is not valid JSON: {exc}") from None


async def _read_body(
    request: Request,
) -> tuple[schemas.EditCreate, dict[str, UploadFile], list[UploadFile]]:
    """The body, the single file parts by name (`_SINGLE_PARTS`) and the `speech` parts."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind == "multipart/form-data":
        try:
            form = await request.form(max_files=len(_SINGLE_PARTS) + MAX_SPEECH_CLIPS, max_fields=64)
        except HTTPException as exc:  # starlette's multipart limits
            raise RequestError(ErrorCode.INVALID_REQUEST, str(exc.detail)) from None
        fields: dict[str, Any] = {}
        singles: dict[str, UploadFile] = {}
        speech: list[UploadFile] = []
        for name, value in form.multi_items():
            if isinstance(value, UploadFile):
                if name in _SINGLE_PARTS and name not in singles:
                    singles[name] = value
                elif name == "speech":
                    speech.append(value)
                else:
                    raise RequestError(
                        ErrorCode.INVALID_REQUEST,
                        f"unexpected file part `{name}` (expected {', '.join(f'`{p}`' for p in _SINGLE_PARTS)} "
                        "once each and `speech`)",
                    )
            elif name in _LIST_FIELDS:
                fields.setdefault(name, []).append(value)
            elif name == "face_box":
                fields[name] = [p.strip() for p in value.split(",")]
            elif name == "faces":
                fields[name] = _json_field(name, value)
            else:
                fields[name] = value
        if len(speech) > MAX_SPEECH_CLIPS:
            raise RequestError(ErrorCode.INVALID_REQUEST, f"at most {MAX_SPEECH_CLIPS} `speech` parts")
        try:
            return schemas.EditCreate.model_validate(fields), singles, speech
        except ValidationError as exc:
            raise invalid_request(exc) from None
    if kind != "application/json":
        raise RequestError(ErrorCode.UNSUPPORTED_MEDIA_TYPE, "send application/json or multipart/form-data")
    try:
        return schemas.EditCreate.model_validate_json(await request.body()), {}, []
    except ValidationError as exc:
        raise invalid_request(exc) from None


def _submit(
    session: Session,
    settings: JobsSettings,
    storage: Storage,
    key: ApiKey,
    body: schemas.EditCreate,
    singles: dict[str, UploadFile],
    speech: list[UploadFile],
    idempotency_key: str | None,
) -> JobRow:
    """The parts saved to a scratch folder (size limits, empty parts refused), then `submissions.submit`."""
    videos = ("video", "pose_video", "expression_reference", "eye_video")
    limits = {name: settings.max_video_bytes for name in videos}
    with tempfile.TemporaryDirectory(prefix=scratch_prefix("req")) as scratch:
        folder = Path(scratch)
        saved = {
            name: save_upload(part, folder, name, limits.get(name, settings.max_speech_bytes))
            for name, part in singles.items()
        }
        clips = tuple(
            save_upload(part, folder, f"speech{i}", settings.max_speech_bytes) for i, part in enumerate(speech)
        )
        submission = submissions.Submission(
            body,
            saved.get("video"),
            clips,
            idempotency_key,
            speech_track_file=saved.get("speech_track"),
            pose_video_file=saved.get("pose_video"),
            expression_reference_file=saved.get("expression_reference"),
            eye_video_file=saved.get("eye_video"),
        )
        return submissions.submit(session, settings, storage, key, submission)


@router.post(
    "",
    status_code=202,
    response_model=schemas.Job,
    openapi_extra=_BODY_DOC | {"parameters": [prefer.HEADER_DOC]},
    responses={
        202: {"headers": {"Location": {"schema": {"type": "string"}}}},
        200: {
            "description": "With `Prefer: wait=N`: the job ended within N seconds (any final state). With "
            "`dry_run: true`: the estimate; nothing was stored.",
            "content": {
                "application/json": {
                    "schema": {
                        "oneOf": [
                            {"$ref": "#/components/schemas/Job"},
                            {"$ref": "#/components/schemas/EditEstimate"},
                        ]
                    }
                }
            },
        },
    },
)
async def create_edit(
    request: Request,
    response: Response,
    key: KeyDep,
    session: SessionDep,
    settings: SettingsDep,
    storage: StorageDep,
    idempotency_key: Annotated[str | None, Header(min_length=1, max_length=255)] = None,
) -> schemas.Job | JSONResponse:
    """Queue an edit; 202 with the job and its `Location`. Same `Idempotency-Key` and body -> the same job.
    With `Prefer: wait=N`, 200 and the finished job if it ends within N seconds."""
    body, singles, speech = await _read_body(request)
    try:
        job = await offload.submission(
            request, key.id, _submit, session, settings, storage, key, body, singles, speech, idempotency_key
        )
    except submissions.Estimated as dry:
        return JSONResponse(dry.answer.model_dump(mode="json"))
    response.headers["Location"] = f"/v1/edits/{job.id}"
    shown = await prefer.answer(request.headers.get("prefer"), settings, storage, job, response, jobs.to_schema)
    assert isinstance(shown, schemas.Job)
    return shown


@router.get("/{job_id}", response_model=schemas.Job)
def get_edit(job_id: str, key: KeyDep, session: SessionDep, storage: StorageDep) -> schemas.Job:
    """The job; for a success, `output_url` is a download signed anew on every read."""
    return jobs.to_schema(submissions.owned(session, key, job_id), storage)


@router.get(
    "/{job_id}/events",
    response_class=StreamingResponse,
    responses={
        200: {
            "description": "Server-sent events `state`, `progress` and, last, `result` (or `error` if the edit was "
            "deleted), each with the job as JSON in `data`.",
            "content": {events.MEDIA_TYPE: {"schema": {"type": "string"}}},
        }
    },
)
def edit_events(
    job_id: str, key: KeyDep, session: SessionDep, notifier: NotifierDep, storage: StorageDep
) -> StreamingResponse:
    """Follow an edit without polling: its state, stage and progress as they change, then its final state.
    A key may hold `CMET_EVENT_STREAMS_PER_KEY` streams open (429 `stream_limit` beyond); revoking the key
    ends its streams."""
    submissions.owned(session, key, job_id)
    body = events.stream(notifier, storage, notifier.watch(key.id, job_id))
    return StreamingResponse(body, media_type=events.MEDIA_TYPE, headers=events.HEADERS)


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
    page, next_cursor = submissions.list_page(session, key, state, limit, cursor)
    return schemas.JobList(data=[jobs.to_schema(j, storage) for j in page], next_cursor=next_cursor)


@router.post("/{job_id}/cancel", response_model=schemas.Job)
def cancel_edit(
    job_id: str, key: KeyDep, session: SessionDep, settings: SettingsDep, storage: StorageDep
) -> schemas.Job:
    """Queued: canceled at once. Running: its worker stops within one chunk of frames and frees the device."""
    return jobs.to_schema(submissions.cancel(session, settings, storage, key, job_id), storage)


@router.delete("/{job_id}", status_code=204)
def delete_edit(job_id: str, key: KeyDep, session: SessionDep, storage: StorageDep) -> Response:
    """Removes a finished edit's record and files (409 while it is queued or running: cancel it first)."""
    submissions.delete(session, storage, key, job_id)
    return Response(status_code=204)
