"""`/v1/edits`: submit, read, list, cancel and delete emotion edits."""

from __future__ import annotations

import base64
import hashlib
import json
import math
import tempfile
from datetime import datetime, timedelta
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Request, Response
from pydantic import ValidationError
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from starlette.datastructures import UploadFile
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException

from cmet_jobs import emotions, jobs, queue, schemas, webhooks
from cmet_jobs.db.models import ApiKey, Asset, Job, JobState, now
from service.deps import KeyDep, SessionDep, SettingsDep, StorageDep, owned_job
from cmet_jobs.inputs import SNIFF_BYTES, check_emotion, check_speech, check_video, sniff_asset
from service.inputs import save_upload
from cmet_jobs.errors import ProblemError
from cmet_jobs.settings import JobsSettings
from cmet_jobs.storage import Storage

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
                    "description": "The fields of EditCreate as form fields, plus file parts `video` and `speech` (repeatable).",
                    "properties": {
                        "video": {"type": "string", "format": "binary"},
                        "speech": {"type": "array", "items": {"type": "string", "format": "binary"}},
                        "emotion": {"type": "string"},
                        "intensity": {"type": "number"},
                    },
                }
            },
        },
    }
}


def _problem_from(exc: ValidationError) -> ProblemError:
    errors = [{"loc": list(e["loc"]), "msg": e["msg"]} for e in exc.errors()]
    detail = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'body'}: {e['msg']}" for e in errors)
    return ProblemError(422, "invalid_request", detail, errors=errors)


async def _read_body(request: Request, settings: JobsSettings) -> tuple[schemas.EditCreate, UploadFile | None, list[UploadFile]]:
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind == "multipart/form-data":
        try:
            form = await request.form(max_files=1 + schemas.MAX_SPEECH, max_fields=64)
        except HTTPException as exc:  # starlette's multipart limits
            raise ProblemError(422, "invalid_request", str(exc.detail)) from None
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
                    raise ProblemError(422, "invalid_request", f"unexpected file part `{name}` (expected `video` once and `speech`)")
            elif name in _LIST_FIELDS:
                fields.setdefault(name, []).append(value)
            elif name == "face_box":
                fields[name] = [p.strip() for p in value.split(",")]
            else:
                fields[name] = value
        try:
            return schemas.EditCreate.model_validate(fields), video, speech
        except ValidationError as exc:
            raise _problem_from(exc) from None
    if kind != "application/json":
        raise ProblemError(415, "unsupported_media_type", "send application/json or multipart/form-data")
    try:
        return schemas.EditCreate.model_validate_json(await request.body()), None, []
    except ValidationError as exc:
        raise _problem_from(exc) from None


def _request_hash(body: schemas.EditCreate, files: list[Path]) -> str:
    digest = hashlib.sha256(json.dumps(body.model_dump(mode="json"), sort_keys=True).encode())
    for path in files:
        with path.open("rb") as f:  # in chunks: a part may be hundreds of MB
            digest.update(hashlib.file_digest(f, "sha256").digest())
    return digest.hexdigest()


def _check_quota(session: SessionDep, key: ApiKey) -> None:
    """Concurrent jobs and submissions per minute. The key's row stays locked until the job is
    inserted (PostgreSQL), so two submissions at once cannot both take the last slot."""
    session.execute(select(ApiKey.id).where(ApiKey.id == key.id).with_for_update())
    if jobs.active_count(session, key.id) >= key.max_concurrent_jobs:
        # when a running job ends is unknown: a short, fixed wait
        raise ProblemError(429, "concurrent_limit", f"{key.max_concurrent_jobs} jobs are already queued or running for this key", {"Retry-After": "10"})
    moment = now()
    window = select(Job.created_at).where(Job.key_id == key.id, Job.created_at >= moment - timedelta(minutes=1))
    recent = session.scalar(select(func.count()).select_from(window.subquery())) or 0
    if recent >= key.max_submissions_per_minute:
        # a slot frees when the submission that puts the key at its limit leaves the one-minute window
        freeing = session.scalar(window.order_by(Job.created_at).offset(recent - key.max_submissions_per_minute).limit(1))
        wait = math.ceil((freeing + timedelta(minutes=1) - moment).total_seconds()) if freeing is not None else 60
        raise ProblemError(429, "rate_limit", f"more than {key.max_submissions_per_minute} submissions in the last minute", {"Retry-After": str(max(1, wait))})


def _asset(session: SessionDep, key: ApiKey, asset_id: str, storage: Storage, kind: str) -> Asset:
    asset = session.get(Asset, asset_id)
    if asset is None or asset.key_id != key.id:
        raise ProblemError(404, "asset_not_found", f"no asset {asset_id}")
    size = storage.size(asset.storage_key)
    if size is None:
        raise ProblemError(422, "asset_not_uploaded", f"asset {asset_id} has no uploaded file yet")
    if size > asset.max_bytes:
        raise ProblemError(413, "file_too_large", f"asset {asset_id} is {size} bytes; the limit is {asset.max_bytes}")
    sniff_asset(storage.head(asset.storage_key, SNIFF_BYTES), kind, asset_id)
    return asset


def _check_urls(body: schemas.EditCreate, settings: JobsSettings) -> None:
    """Every URL the job will use: the webhook's address; and the inputs fetched as the worker will
    fetch them (redirects followed and checked, answer and size), so a bad URL is a 4xx now."""
    from cmet_jobs.net_guard import BlockedURLError, check_url, probe_url

    policy = {"allow_private": settings.allow_private_urls, "schemes": settings.url_schemes}
    inputs = [(u, settings.max_video_bytes) for u in [body.video_url] if u is not None] + [(u, settings.max_speech_bytes) for u in body.speech_urls]
    for url, max_bytes in inputs:
        try:
            probe_url(url, max_bytes=max_bytes, **policy)  # type: ignore[arg-type]
        except BlockedURLError as exc:
            raise ProblemError(413 if exc.code == "url_too_large" else 422, exc.code, f"{url}: {exc}") from None
    if body.webhook_url is not None:
        try:
            check_url(body.webhook_url, **policy)  # type: ignore[arg-type]
        except BlockedURLError as exc:
            raise ProblemError(422, exc.code, f"{body.webhook_url}: {exc}") from None


@router.post("", status_code=202, response_model=schemas.Job, openapi_extra=_BODY_DOC, responses={202: {"headers": {"Location": {"schema": {"type": "string"}}}}})
async def create_edit(
    request: Request,
    response: Response,
    key: KeyDep,
    session: SessionDep,
    settings: SettingsDep,
    storage: StorageDep,
    idempotency_key: Annotated[str | None, Header(max_length=255)] = None,
) -> schemas.Job:
    """Queue an edit; 202 with the job and its `Location`. Same `Idempotency-Key` and body -> the same job."""
    body, video, speech = await _read_body(request, settings)
    with tempfile.TemporaryDirectory(prefix="cmet-req-") as scratch:
        files: list[Path] = []
        if video is not None:
            files.append(save_upload(video, Path(scratch), "video", settings.max_video_bytes))
        files += [save_upload(part, Path(scratch), f"speech{i}", settings.max_speech_bytes) for i, part in enumerate(speech)]
        digest = _request_hash(body, files)
        if idempotency_key is not None:
            existing = session.scalar(select(Job).where(Job.key_id == key.id, Job.idempotency_key == idempotency_key))
            if existing is not None and existing.created_at >= now() - timedelta(hours=24):
                if existing.request_hash != digest:
                    raise ProblemError(422, "idempotency_key_reused", "this Idempotency-Key was used with another request body")
                if existing.stage == "creating":
                    raise ProblemError(409, "idempotency_in_progress", "the first request with this Idempotency-Key is still being created")
                response.headers["Location"] = f"/v1/edits/{existing.id}"
                return jobs.to_schema(existing, storage)
            if existing is not None:
                existing.idempotency_key = None  # expired: the key may be used again
                session.flush()
        sources = (video is not None) + (body.video_url is not None) + (body.video_asset is not None)
        if sources != 1:
            raise ProblemError(422, "video_missing" if sources == 0 else "invalid_request", "give the video exactly once: part `video`, video_url or video_asset")
        has_speech = bool(speech or body.speech_urls or body.speech_assets)
        if (body.emotion is None) == (not has_speech):
            raise ProblemError(422, "emotion_missing" if body.emotion is None else "invalid_request", "give exactly one of `emotion` and speech clips")
        if body.emotion is not None:
            body = body.model_copy(update={"emotion": emotions.resolve_id(session, key.id, body.emotion)})
            check_emotion(body.emotion, body.intensity, emotions.library_for_key(session, key.id))
        await run_in_threadpool(_check_urls, body, settings)
        duration = check_video(files[0], settings.max_video_duration_s) if video is not None else None
        for path in files[1 if video is not None else 0 :]:
            check_speech(path)
        _check_quota(session, key)
        assets = [_asset(session, key, a, storage, "video") for a in ([body.video_asset] if body.video_asset else [])]
        assets += [_asset(session, key, a, storage, "speech") for a in body.speech_assets]
        job = Job(key_id=key.id, request=body.model_dump(mode="json"), idempotency_key=idempotency_key, request_hash=digest, stage="creating")
        session.add(job)
        try:
            session.commit()
        except IntegrityError:
            session.rollback()
            raise ProblemError(409, "idempotency_in_progress", "a request with this Idempotency-Key is being created") from None
        try:
            job.inputs = _store_inputs(job.id, body, video is not None, files, assets, storage)
            job.stage = None
            job.webhook_url = body.webhook_url
            job.webhook_events = {"events": list(body.webhook_events)}
            session.commit()
            queue.submit(settings, job.id, duration)
        except Exception:
            session.rollback()
            storage.delete_prefix(jobs.job_prefix(job.id))
            session.delete(session.get(Job, job.id))
            session.commit()
            raise
    response.headers["Location"] = f"/v1/edits/{job.id}"
    return jobs.to_schema(job, storage)


def _store_inputs(job_id: str, body: schemas.EditCreate, uploaded_video: bool, files: list[Path], assets: list[Asset], storage: Storage) -> dict[str, Any]:
    prefix = jobs.job_prefix(job_id)
    entries: list[dict[str, str]] = []
    for i, path in enumerate(files):
        key = prefix + ("input/video" if uploaded_video and i == 0 else f"input/speech{i}")
        storage.put_file(key, path, "application/octet-stream")
        entries.append({"key": key})
    asset_entries = [{"key": a.storage_key} for a in assets]
    video: dict[str, str]
    if uploaded_video:
        video, speech = entries[0], entries[1:]
    elif body.video_url is not None:
        video, speech = {"url": body.video_url}, entries
    else:
        video, speech = asset_entries.pop(0), entries
    speech += asset_entries + [{"url": u} for u in body.speech_urls]
    return {"video": video, "speech": speech}


@router.get("/{job_id}", response_model=schemas.Job)
def get_edit(job_id: str, key: KeyDep, session: SessionDep, storage: StorageDep) -> schemas.Job:
    """The job; for a success, `output_url` is a download signed anew on every read."""
    return jobs.to_schema(owned_job(session, key, job_id), storage)


def _cursor(job: Job) -> str:
    return base64.urlsafe_b64encode(f"{job.created_at.isoformat()}|{job.id}".encode()).decode()


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
    query = select(Job).where(Job.key_id == key.id, (Job.stage.is_(None)) | (Job.stage != "creating"))
    if state is not None:
        query = query.where(Job.state == state)
    if cursor is not None:
        try:
            stamp, _, last_id = base64.urlsafe_b64decode(cursor.encode()).decode().partition("|")
            when = datetime.fromisoformat(stamp)
        except ValueError:
            raise ProblemError(422, "bad_cursor", "cursor is not one this API returned") from None
        query = query.where((Job.created_at < when) | ((Job.created_at == when) & (Job.id < last_id)))
    rows = list(session.scalars(query.order_by(Job.created_at.desc(), Job.id.desc()).limit(limit + 1)))
    page = rows[:limit]
    return schemas.JobList(data=[jobs.to_schema(j, storage) for j in page], next_cursor=_cursor(page[-1]) if len(rows) > limit else None)


@router.post("/{job_id}/cancel", response_model=schemas.Job)
def cancel_edit(job_id: str, key: KeyDep, session: SessionDep, settings: SettingsDep, storage: StorageDep) -> schemas.Job:
    """Queued: canceled at once. Running: its worker stops within one chunk of frames and frees the device."""
    job = owned_job(session, key, job_id, lock=True)
    jobs.request_cancel(session, job)
    event = webhooks.emit(session, job, "edit.canceled", storage) if job.state == JobState.CANCELED else None
    session.commit()
    webhooks.dispatch(settings, [event])
    return jobs.to_schema(job, storage)


@router.delete("/{job_id}", status_code=204)
def delete_edit(job_id: str, key: KeyDep, session: SessionDep, storage: StorageDep) -> Response:
    """Removes a finished edit's record and files (409 while it is queued or running: cancel it first)."""
    job = owned_job(session, key, job_id)
    if not JobState(job.state).final:
        raise ProblemError(409, "edit_active", "cancel the edit first; delete works on finished edits")
    storage.delete_prefix(jobs.job_prefix(job.id))
    session.delete(job)
    return Response(status_code=204)
