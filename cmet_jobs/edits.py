"""Edits as the API offers them, without HTTP: submit, list, cancel, delete.

`submit` is the whole way from a parsed request to a queued job: idempotency, the source rules,
the emotion, the URL and media checks, the quota, the record, the stored inputs and the queue
message, undone together when any step after the insert fails. Routes parse and call these.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from cmet_core.errors import ErrorCode
from cmet_core.voice import FROM_AUDIO
from cmet_jobs import emotions, jobs, paging, queue, schemas, timelines, uploads, webhooks
from cmet_jobs.db.models import ApiKey, Asset, Job, SubmissionStamp, now
from cmet_jobs.errors import RequestError
from cmet_jobs.inputs import check_emotion, check_speech, check_video
from cmet_jobs.settings import JobsSettings
from cmet_jobs.spec import EditSpec, InputRef
from cmet_jobs.states import JobState
from cmet_jobs.storage import Storage

IDEMPOTENCY_WINDOW = timedelta(hours=24)


@dataclass(frozen=True)
class Submission:
    """A parsed edit request: the body, the files that came as parts (saved locally) and its Idempotency-Key."""

    body: schemas.EditCreate
    video_file: Path | None = None
    speech_files: tuple[Path, ...] = ()
    idempotency_key: str | None = None

    @property
    def files(self) -> list[Path]:
        return ([self.video_file] if self.video_file is not None else []) + list(self.speech_files)


def request_hash(submission: Submission) -> str:
    digest = hashlib.sha256(json.dumps(submission.body.model_dump(mode="json"), sort_keys=True).encode())
    for path in submission.files:
        with path.open("rb") as f:  # in chunks: a part may be hundreds of MB
            digest.update(hashlib.file_digest(f, "sha256").digest())
    return digest.hexdigest()


def _replayed(session: Session, key: ApiKey, idempotency_key: str | None, digest: str) -> Job | None:
    """The job a same-key, same-body request made within the window; an older one frees the key."""
    if idempotency_key is None:
        return None
    existing = session.scalar(select(Job).where(Job.key_id == key.id, Job.idempotency_key == idempotency_key))
    if existing is None:
        return None
    if existing.created_at < now() - IDEMPOTENCY_WINDOW:
        existing.idempotency_key = None
        session.flush()
        return None
    if existing.request_hash != digest:
        raise RequestError(ErrorCode.IDEMPOTENCY_KEY_REUSED, "this Idempotency-Key was used with another request body")
    if existing.state == JobState.CREATING:
        raise RequestError(
            ErrorCode.IDEMPOTENCY_IN_PROGRESS, "the first request with this Idempotency-Key is still being created"
        )
    return existing


def _check_sources(submission: Submission) -> None:
    body = submission.body
    sources = (submission.video_file is not None) + (body.video_url is not None) + (body.video_asset is not None)
    if sources != 1:
        code = ErrorCode.VIDEO_MISSING if sources == 0 else ErrorCode.INVALID_REQUEST
        raise RequestError(code, "give the video exactly once: part `video`, video_url or video_asset")
    has_speech = bool(submission.speech_files or body.speech_urls or body.speech_assets)
    targets = (body.emotion is not None) + has_speech + (body.timeline is not None)
    if targets != 1:
        code = ErrorCode.EMOTION_MISSING if targets == 0 else ErrorCode.INVALID_REQUEST
        raise RequestError(code, "give exactly one of `emotion`, speech clips and `timeline`")


RATE_WINDOW = timedelta(minutes=1)


def check_quota(session: Session, key: ApiKey) -> None:
    """Concurrent jobs and submissions per minute. The key's row stays locked until the job is
    inserted (PostgreSQL), so two submissions at once cannot both take the last slot. The rate
    counts a stamp per accepted submission, never job rows, so deleting jobs frees no quota; the
    stamp commits with the job (a request refused later leaves none)."""
    session.execute(select(ApiKey.id).where(ApiKey.id == key.id).with_for_update())
    if jobs.active_count(session, key.id) >= key.max_concurrent_jobs:
        # when a running job ends is unknown: a short, fixed wait
        raise RequestError(
            ErrorCode.CONCURRENT_LIMIT,
            f"{key.max_concurrent_jobs} jobs are already queued or running for this key",
            {"Retry-After": "10"},
        )
    moment = now()
    mine = SubmissionStamp.key_id == key.id
    session.execute(sa.delete(SubmissionStamp).where(mine, SubmissionStamp.at < moment - RATE_WINDOW))
    window = select(SubmissionStamp.at).where(mine, SubmissionStamp.at >= moment - RATE_WINDOW)
    recent = session.scalar(select(func.count()).select_from(window.subquery())) or 0
    if recent >= key.max_submissions_per_minute:
        # a slot frees when the submission that puts the key at its limit leaves the one-minute window
        freeing = session.scalar(
            window.order_by(SubmissionStamp.at).offset(recent - key.max_submissions_per_minute).limit(1)
        )
        wait = math.ceil((freeing + RATE_WINDOW - moment).total_seconds()) if freeing is not None else 60
        raise RequestError(
            ErrorCode.RATE_LIMIT,
            f"more than {key.max_submissions_per_minute} submissions in the last minute",
            {"Retry-After": str(max(1, wait))},
        )
    session.add(SubmissionStamp(key_id=key.id, at=moment))


def check_urls(body: schemas.EditCreate, settings: JobsSettings) -> None:
    """Every URL the job will use: the webhook's address; and the inputs fetched as the worker will
    fetch them (redirects followed and checked, answer and size), so a bad URL is a 4xx now."""
    from cmet_jobs.net_guard import BlockedURLError, check_url, probe_url

    schemes = settings.url_schemes
    inputs = [(u, settings.max_video_bytes) for u in [body.video_url] if u is not None]
    inputs += [(u, settings.max_speech_bytes) for u in body.speech_urls + timelines.speech_urls(body.timeline)]
    for url, max_bytes in inputs:
        try:
            probe_url(url, max_bytes=max_bytes, allow_private=settings.allow_private_urls, schemes=schemes)
        except BlockedURLError as exc:
            raise RequestError(exc.code, f"{url}: {exc}") from None
    if body.webhook_url is not None:
        try:
            check_url(body.webhook_url, allow_private=settings.allow_private_urls, schemes=schemes)
        except BlockedURLError as exc:
            raise RequestError(exc.code, f"{body.webhook_url}: {exc}") from None


def submit(session: Session, settings: JobsSettings, storage: Storage, key: ApiKey, submission: Submission) -> Job:
    """Queue an edit, or return the job an identical earlier request with the same Idempotency-Key made."""
    digest = request_hash(submission)
    replayed = _replayed(session, key, submission.idempotency_key, digest)
    if replayed is not None:
        return replayed
    _check_sources(submission)
    body = submission.body
    if body.emotion is not None and body.emotion != FROM_AUDIO:
        emotion = emotions.resolve_id(session, key.id, body.emotion)
        check_emotion(emotion, body.intensity, emotions.library_for_key(session, key.id))
        body = body.model_copy(update={"emotion": emotion})
    check_urls(body, settings)
    video = (
        check_video(submission.video_file, settings.edit_options(body)) if submission.video_file is not None else None
    )
    for path in submission.speech_files:
        check_speech(path)
    timelines.check_voice(body, video)
    if body.timeline is not None:
        body = body.model_copy(update={"timeline": timelines.resolved(session, key, body, settings, video)})
    check_quota(session, key)
    video_asset = uploads.usable(session, storage, key, body.video_asset, "video") if body.video_asset else None
    speech_assets = [uploads.usable(session, storage, key, a, "speech") for a in body.speech_assets]
    segment_assets = timelines.assets(session, storage, key, body.timeline)
    job = Job(
        key_id=key.id,
        state=JobState.CREATING,
        spec={},
        idempotency_key=submission.idempotency_key,
        request_hash=digest,
        webhook_url=body.webhook_url,
        webhook_events={"events": list(body.webhook_events)},
    )
    session.add(job)
    try:
        session.commit()
    except IntegrityError:
        session.rollback()
        raise RequestError(
            ErrorCode.IDEMPOTENCY_IN_PROGRESS, "a request with this Idempotency-Key is being created"
        ) from None
    try:
        spec = _store_inputs(job.id, body, submission, video_asset, speech_assets, storage, segment_assets)
        job.spec = spec.model_dump(mode="json")
        job.state = JobState.QUEUED
        session.commit()
        queue.submit(settings, job.id, video)
    except Exception:
        session.rollback()
        storage.delete_prefix(jobs.job_prefix(job.id))
        session.delete(session.get(Job, job.id))
        session.commit()
        raise
    return job


def _store_inputs(
    job_id: str,
    body: schemas.EditCreate,
    submission: Submission,
    video_asset: Asset | None,
    speech_assets: list[Asset],
    storage: Storage,
    segment_assets: dict[str, Asset],
) -> EditSpec:
    """Parts and assets are copied under the job's prefix and the spec refers to those copies (and to
    URLs): the job runs on what it was accepted with, whatever later happens to an asset."""
    prefix = jobs.job_prefix(job_id) + "input/"

    def part(path: Path, name: str) -> InputRef:
        storage.put_file(prefix + name, path, "application/octet-stream")
        return InputRef(key=prefix + name)

    def copy(asset: Asset, name: str, kind: str) -> InputRef:
        uploads.snapshot(storage, asset, prefix + name, kind)
        return InputRef(key=prefix + name)

    if submission.video_file is not None:
        video = part(submission.video_file, "video")
    elif video_asset is not None:
        video = copy(video_asset, "video", "video")
    else:
        assert body.video_url is not None  # _check_sources: the video came exactly once
        video = InputRef(url=body.video_url)
    speech = [part(path, f"speech{i}") for i, path in enumerate(submission.speech_files)]
    speech += [copy(asset, f"speech{len(speech) + i}", "speech") for i, asset in enumerate(speech_assets)]
    speech += [InputRef(url=u) for u in body.speech_urls]
    timeline = (
        timelines.stored(body.timeline, segment_assets, lambda a, name: copy(a, name, "speech"))
        if body.timeline is not None
        else None
    )
    return EditSpec(
        video=video,
        speech=tuple(speech),
        emotion=body.emotion,
        intensity=body.intensity,
        face_index=body.face_index,
        face_box=body.face_box,
        source_frame=body.source_frame,
        neutral=body.neutral,
        timeline=timeline,
    )


def list_page(
    session: Session, key: ApiKey, state: JobState | None, limit: int, cursor: str | None
) -> tuple[list[Job], str | None]:
    """One page of the key's visible jobs, newest first, and the cursor of the next page (None at the end)."""
    query = jobs.visible(select(Job)).where(Job.key_id == key.id)
    if state is not None:
        query = query.where(Job.state == state)
    return paging.page(session, query, (Job.created_at, Job.id), limit, cursor)


def owned(session: Session, key: ApiKey, job_id: str, *, lock: bool = False) -> Job:
    """The caller's visible job, else 404 (another key's id looks exactly like a missing one)."""
    job = jobs.lock(session, job_id) if lock else session.get(Job, job_id)
    if job is None or job.key_id != key.id or job.state == JobState.CREATING:
        raise RequestError(ErrorCode.EDIT_NOT_FOUND, f"no edit {job_id}")
    return job


def cancel(session: Session, settings: JobsSettings, storage: Storage, key: ApiKey, job_id: str) -> Job:
    """Queued: canceled at once. Running: its worker stops within one chunk of frames."""
    job = owned(session, key, job_id, lock=True)
    jobs.request_cancel(job)
    event = webhooks.emit(session, job, "edit.canceled", storage) if job.state == JobState.CANCELED else None
    session.commit()
    webhooks.dispatch(settings, [event])
    return job


def delete(session: Session, storage: Storage, key: ApiKey, job_id: str) -> None:
    """A finished edit's record and files; a queued or running one must be canceled first. The files
    go first: a failure leaves the record, and deleting again finishes the job."""
    job = owned(session, key, job_id)
    if not job.state.final:
        raise RequestError(ErrorCode.EDIT_ACTIVE, "cancel the edit first; delete works on finished edits")
    storage.delete_prefix(jobs.job_prefix(job.id))
    session.delete(job)
    session.commit()
