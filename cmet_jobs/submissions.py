"""Every job kind's lifecycle as the API offers it, without HTTP: submit, list, cancel, delete.

Edits, clip previews and contact sheets share it (`Family` says which kinds a route serves;
`cmet_jobs.previews` submits sheets through `create_job`). `submit` is an edit's whole way from a
parsed request to a queued job: idempotency, the source rules, the emotion, the URL and media
checks, the quota, the record, the stored inputs and the queue message, undone together when any
step after the insert fails. Routes parse and call these.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, Protocol, TypeVar
from urllib.parse import unquote, urlsplit

from pydantic import BaseModel
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from cmet_core.edit.lips import check_inputs
from cmet_core.emotion.voice import FROM_AUDIO
from cmet_core.errors import ErrorCode, InputError
from cmet_core.media.photo import is_photo
from cmet_core.media.video import VideoInfo
from cmet_core.options import EditChoices, FaceTarget
from cmet_jobs import (
    batches,
    connectors,
    emotions,
    estimates,
    jobs,
    paging,
    queue,
    quota,
    schemas,
    timelines,
    uploads,
    webhooks,
)
from cmet_jobs.db.models import ApiKey, Asset, BatchRow, JobRow, new_id, now
from cmet_jobs.errors import RequestError
from cmet_jobs.inputs import (
    check_emotion,
    check_photo,
    check_reference,
    check_speech,
    check_speech_track,
    check_video,
)
from cmet_jobs.settings import JobsSettings
from cmet_jobs.spec import EditSpec, InputRef
from cmet_jobs.states import JobKind, JobState
from cmet_jobs.storage import Storage

IDEMPOTENCY_WINDOW = timedelta(hours=24)


@dataclass(frozen=True)
class Submission:
    """A parsed edit request: the body, the files that came as parts (saved locally) and its Idempotency-Key."""

    body: schemas.EditCreate
    video_file: Path | None = None
    speech_files: tuple[Path, ...] = ()
    idempotency_key: str | None = None
    speech_track_file: Path | None = None
    pose_video_file: Path | None = None
    expression_reference_file: Path | None = None
    eye_video_file: Path | None = None

    @property
    def files(self) -> list[Path]:
        singles = (
            self.video_file,
            self.speech_track_file,
            self.pose_video_file,
            self.expression_reference_file,
            self.eye_video_file,
        )
        return [p for p in singles[:1] if p is not None] + list(self.speech_files) + [p for p in singles[1:] if p]

    @property
    def has_reference(self) -> bool:
        """Whether the target is an expression reference (a part, a URL or an asset)."""
        body = self.body
        given = (self.expression_reference_file, body.expression_reference_url, body.expression_reference_asset)
        return any(ref is not None for ref in given)


class Hashed(Protocol):
    """A parsed request whose body and files make its Idempotency-Key digest (an edit or a contact sheet)."""

    @property
    def body(self) -> BaseModel: ...

    @property
    def files(self) -> list[Path]: ...


def request_hash(submission: Hashed) -> str:
    digest = hashlib.sha256(json.dumps(submission.body.model_dump(mode="json"), sort_keys=True).encode())
    for path in submission.files:
        with path.open("rb") as f:  # in chunks: a part may be hundreds of MB
            digest.update(hashlib.file_digest(f, "sha256").digest())
    return digest.hexdigest()


R = TypeVar("R", JobRow, BatchRow)


def replayed(session: Session, key: ApiKey, idempotency_key: str | None, digest: str, record: type[R]) -> R | None:
    """The job (or batch) a same-key, same-body request made within the window; an older one frees the key."""
    if idempotency_key is None:
        return None
    existing = session.scalar(select(record).where(record.key_id == key.id, record.idempotency_key == idempotency_key))
    if existing is None:
        return None
    if existing.created_at < now() - IDEMPOTENCY_WINDOW:
        existing.idempotency_key = None
        session.flush()
        return None
    if existing.request_hash != digest:
        raise RequestError(ErrorCode.IDEMPOTENCY_KEY_REUSED, "this Idempotency-Key was used with another request body")
    if _creating(session, existing):
        raise RequestError(
            ErrorCode.IDEMPOTENCY_IN_PROGRESS, "the first request with this Idempotency-Key is still being created"
        )
    return existing


def _creating(session: Session, record: JobRow | BatchRow) -> bool:
    """Whether the API is still storing the job's inputs (a batch's: any of its jobs')."""
    if isinstance(record, JobRow):
        return record.state == JobState.CREATING
    query = select(JobRow.id).where(JobRow.batch_id == record.id, JobRow.state == JobState.CREATING).limit(1)
    return session.scalar(query) is not None


def check_one_video(video_file: Path | None, video_url: str | None, video_asset: str | None) -> None:
    sources = (video_file is not None) + (video_url is not None) + (video_asset is not None)
    if sources != 1:
        code = ErrorCode.VIDEO_MISSING if sources == 0 else ErrorCode.INVALID_REQUEST
        raise RequestError(code, "give the video exactly once: part `video`, video_url or video_asset")


def _check_sources(submission: Submission) -> None:
    body = submission.body
    check_one_video(submission.video_file, body.video_url, body.video_asset)
    has_speech = bool(submission.speech_files or body.speech_urls or body.speech_assets)
    given = (submission.expression_reference_file, body.expression_reference_url, body.expression_reference_asset)
    if sum(ref is not None for ref in given) > 1:
        message = "give the expression_reference once: part `expression_reference`, its _url or its _asset"
        raise RequestError(ErrorCode.INVALID_REQUEST, message)
    targets = (body.emotion is not None) + has_speech + submission.has_reference + (body.timeline is not None)
    if body.faces:
        if targets:
            raise RequestError(
                ErrorCode.INVALID_REQUEST, "with `faces`, each face carries its emotion: no top-level target"
            )
        if any(face.files() for face in body.faces):
            raise RequestError(
                ErrorCode.INVALID_REQUEST,
                "through the API a face takes an emotion or a timeline of named emotions: per-face speech clips "
                "and expression references are the CLI's (`--faces-plan`) for now",
            )
        return
    if targets != 1:
        code = ErrorCode.EMOTION_MISSING if targets == 0 else ErrorCode.INVALID_REQUEST
        raise RequestError(
            code, "give exactly one of `emotion`, speech clips, an `expression_reference` and `timeline`"
        )


def _check_dub(submission: Submission) -> bool | None:
    """The lip rules of `cmet_core.edit.lips`; whether the video is a photo (None: behind a URL or an
    asset, so only the worker knows; a pose video then counts as saying it is one)."""
    body = submission.body
    parts = {
        "speech_track": submission.speech_track_file,
        "pose_video": submission.pose_video_file,
        "eye_video": submission.eye_video_file,
    }
    given = {
        name: sum(ref is not None for ref in (part, getattr(body, f"{name}_url"), getattr(body, f"{name}_asset")))
        for name, part in parts.items()
    }
    for name, count in given.items():
        if count > 1:
            message = f"give the {name} once: part `{name}`, {name}_url or {name}_asset"
            raise RequestError(ErrorCode.INVALID_REQUEST, message)
    photo = is_photo(submission.video_file) if submission.video_file is not None else None
    try:
        check_inputs(
            body.lips,
            photo=photo if photo is not None else bool(given["pose_video"]),
            speech_track=bool(given["speech_track"]),
            pose_video=bool(given["pose_video"]),
            follows_voice=body.emotion == FROM_AUDIO,
        )
        EditChoices.of(body).check_eye_video(bool(given.pop("eye_video")))
    except InputError as exc:
        raise RequestError(exc.code, str(exc)) from None
    if body.preview_s is not None and (body.lips == "speech" or photo or any(given.values())):
        # the worker's editor refuses these too (`Editor.edit`); here they cost the user no queue wait
        raise RequestError(
            ErrorCode.BAD_PREVIEW_WINDOW,
            "clip previews of dubs (lips: speech, a photo, a speech track or a pose video) are not offered",
        )
    return photo


def check_urls(body: schemas.EditCreate, settings: JobsSettings) -> None:
    """Every URL the job will use: the webhook's address; and the inputs fetched as the worker will
    fetch them (redirects followed and checked, answer and size), so a bad URL is a 4xx now."""
    inputs = [(u, settings.max_video_bytes) for u in [body.video_url] if u is not None]
    inputs += [(u, settings.max_speech_bytes) for u in body.speech_urls + timelines.speech_urls(body.timeline)]
    inputs += [(u, settings.max_speech_bytes) for u in [body.speech_track_url] if u is not None]
    inputs += [(u, settings.max_video_bytes) for u in [body.pose_video_url, body.eye_video_url] if u is not None]
    references = [body.expression_reference_url] if body.expression_reference_url else []
    inputs += [(u, settings.max_video_bytes) for u in references + timelines.reference_urls(body.timeline)]
    check_url_list(settings, inputs, body.webhook_url)


def check_url_list(settings: JobsSettings, inputs: list[tuple[str, int]], webhook_url: str | None) -> None:
    """Input URLs (with their size limits) probed as the worker will fetch them, and the webhook's address."""
    from cmet_jobs.net_guard import BlockedURLError, check_url, probe_url  # deferred: httpx

    schemes = settings.url_schemes
    for url, max_bytes in inputs:
        try:
            probe_url(
                url,
                max_bytes=max_bytes,
                allow_private=settings.allow_private_urls,
                schemes=schemes,
                total_timeout=settings.url_probe_timeout_s,
            )
        except BlockedURLError as exc:
            raise refused_url(settings, url, exc.code, str(exc)) from None
    if webhook_url is not None:
        try:
            check_url(webhook_url, allow_private=settings.allow_private_urls, schemes=schemes)
        except BlockedURLError as exc:
            raise refused_url(settings, webhook_url, exc.code, str(exc)) from None


LAN_HINT = " (the operator allows http and private addresses with CMET_ALLOW_PRIVATE_URLS=true)"


def refused_url(settings: JobsSettings, url: str, code: ErrorCode, why: str) -> RequestError:
    """The refusal of a URL; one that the operator's setting would let through (plain http, a private or
    loopback address: a receiver on the same machine) names the setting. Metadata addresses stay refused."""
    from cmet_jobs.net_guard import BlockedURLError, check_url  # deferred: httpx

    if settings.allow_private_urls or code not in (ErrorCode.URL_SCHEME, ErrorCode.URL_PRIVATE_ADDRESS):
        return RequestError(code, f"{url}: {why}")
    try:
        check_url(url, allow_private=True, schemes=("https", "http"))
    except BlockedURLError:
        return RequestError(code, f"{url}: {why}")
    return RequestError(code, f"{url}: {why}{LAN_HINT}")


def submit(session: Session, settings: JobsSettings, storage: Storage, key: ApiKey, submission: Submission) -> JobRow:
    """Queue an edit, or return the job an identical earlier request with the same Idempotency-Key made."""
    digest = request_hash(submission)
    earlier = replayed(session, key, submission.idempotency_key, digest, JobRow)
    if earlier is not None:
        return earlier
    ready = checked(session, settings, storage, key, submission)
    if submission.body.dry_run:
        raise Estimated(estimates.estimate(session, ready.video, submission.body.preview_s))
    return create_job(session, key, ready.job(settings, storage, digest, submission.idempotency_key), storage)


@dataclass(frozen=True)
class Checked:
    """An edit that passed every check: its body as it will run (emotion and timeline resolved), the
    media measured and the assets it copies. `job` turns it into the record, inputs and queue message."""

    body: schemas.EditCreate
    submission: Submission
    video: VideoInfo | None
    video_asset: Asset | None
    speech_assets: list[Asset]
    dub_assets: dict[str, Asset | None]
    segment_assets: dict[str, Asset]

    def job(self, settings: JobsSettings, storage: Storage, digest: str | None, idempotency_key: str | None) -> NewJob:
        body, video = self.body, self.video
        kind = JobKind.CLIP if body.preview_s is not None else JobKind.EDIT
        frames = math.ceil(body.preview_s * video.frame_rate) if video is not None and body.preview_s else None
        return NewJob(
            kind,
            digest,
            idempotency_key,
            body.webhook_url,
            list(body.webhook_events),
            lambda job_id: _store_inputs(
                job_id,
                body,
                self.submission,
                self.video_asset,
                self.speech_assets,
                self.dub_assets,
                storage,
                self.segment_assets,
            ),
            lambda job_id: queue.submit(settings, job_id, video if body.lips == "video" else None, kind, frames),
        )


def checked(
    session: Session,
    settings: JobsSettings,
    storage: Storage,
    key: ApiKey,
    submission: Submission,
    *,
    quota_of: int = 1,
) -> Checked:
    """Every check of an edit, cheapest first: the sources, the quota (read only), the dub's inputs, the
    emotion, the URLs, the media, the timeline, the quota taken for `quota_of` jobs (0: the caller, a
    batch, takes it for all its edits), the assets."""
    _check_sources(submission)
    body = submission.body
    connectors.check(settings, needs=not submission.has_reference and (body.timeline is None or body.timeline.speaks()))
    previews = settings.previews_per_key if body.preview_s is not None else None
    if quota_of:
        quota.check(session, key, previews, take=False, count=quota_of)
    photo = _check_dub(submission)
    if body.emotion is not None and body.emotion != FROM_AUDIO:
        emotion = emotions.resolve_id(session, key.id, body.emotion)
        check_emotion(emotion, body.intensity, emotions.library_for_key(session, key.id))
        body = body.model_copy(update={"emotion": emotion})
    check_urls(body, settings)
    choices, limits = EditChoices.of(body), settings.limits()
    video = None
    if submission.video_file is not None:
        if photo:
            check_photo(submission.video_file, limits)
        else:
            video = check_video(submission.video_file, choices, limits)
    for path in submission.speech_files:
        check_speech(path)
    if submission.speech_track_file is not None:
        check_speech_track(submission.speech_track_file, limits.max_duration_s)
    if submission.pose_video_file is not None:
        check_video(submission.pose_video_file, choices, limits, "pose_video")
    if submission.expression_reference_file is not None:
        check_reference(submission.expression_reference_file, limits)
    if submission.eye_video_file is not None:
        check_video(submission.eye_video_file, choices, limits, "eye_video")
    track = submission.speech_track_file or body.speech_track_url or body.speech_track_asset
    clip = video if body.lips == "video" and not track else None  # else the voice is the speech track's
    timelines.check_voice(body, clip)
    if body.timeline is not None:
        body = body.model_copy(update={"timeline": timelines.resolved(session, key, body, settings, clip)})
    if body.faces:
        body = body.model_copy(update={"faces": _resolved_faces(session, key, body.faces, settings, clip)})
    if quota_of:
        quota.check(session, key, previews, count=quota_of)
    video_asset = uploads.usable(session, storage, key, body.video_asset, "video") if body.video_asset else None
    return Checked(
        body,
        submission,
        video,
        video_asset,
        [uploads.usable(session, storage, key, a, "speech") for a in body.speech_assets],
        {
            name: uploads.usable(session, storage, key, asset_id, kind) if asset_id else None
            for name, asset_id, kind in (
                ("speech_track", body.speech_track_asset, "speech"),
                ("pose_video", body.pose_video_asset, "video"),
                ("expression_reference", body.expression_reference_asset, "video"),
                ("eye_video", body.eye_video_asset, "video"),
            )
        },
        timelines.assets(session, storage, key, body.timeline),
    )


def _resolved_faces(
    session: Session, key: ApiKey, faces: tuple[FaceTarget, ...], settings: JobsSettings, video: VideoInfo | None
) -> tuple[FaceTarget, ...]:
    """Each face's emotion or timeline checked as a top-level one is, a custom emotion's name resolved to its id."""
    library = emotions.library_for_key(session, key.id)
    resolved = []
    for face in faces:
        if face.emotion is not None and face.emotion != FROM_AUDIO:
            emotion = emotions.resolve_id(session, key.id, face.emotion)
            check_emotion(emotion, face.intensity, library)
            face = face.model_copy(update={"emotion": emotion})
        if face.timeline is not None:
            where = f"faces ({face.label()}): timeline"
            timeline = timelines.checked(session, key, face.timeline, settings, video, where)
            face = face.model_copy(update={"timeline": timeline})
        resolved.append(face)
    return tuple(resolved)


class Estimated(Exception):
    """A dry run passed every check: its estimate instead of a job (nothing was stored)."""

    def __init__(self, answer: schemas.EditEstimate) -> None:
        super().__init__("dry run")
        self.answer = answer


@dataclass(frozen=True)
class NewJob:
    """A job to create: the record's fields a submission fixes before its inputs are stored, how its inputs
    are stored (`store` returns its spec) and how it is queued (`send`)."""

    kind: JobKind
    request_hash: str | None
    idempotency_key: str | None
    webhook_url: str | None
    webhook_events: list[str]
    store: Callable[[str], BaseModel]
    send: Callable[[str], None]


def create_job(session: Session, key: ApiKey, new: NewJob, storage: Storage) -> JobRow:
    """One job made as `create_jobs` makes several."""
    return create_jobs(session, key, [new], storage)[0]


def create_jobs(
    session: Session, key: ApiKey, new: list[NewJob], storage: Storage, batch: BatchRow | None = None
) -> list[JobRow]:
    """Insert the jobs (`creating`, with their batch), store their inputs, mark them queued and queue
    them: any failure after the insert removes the rows, their files and the batch, so a request is
    accepted whole or not at all. Checks and quota come first; the quota's stamps commit with the rows."""
    if batch is not None:
        session.add(batch)
    made = [
        JobRow(
            id=new_id(job.kind.id_prefix),
            key_id=key.id,
            kind=job.kind,
            state=JobState.CREATING,
            spec={},
            idempotency_key=job.idempotency_key,
            request_hash=job.request_hash,
            webhook_url=job.webhook_url,
            webhook_events={"events": job.webhook_events},
            batch_id=batch.id if batch is not None else None,
        )
        for job in new
    ]
    if batch is not None:
        batch.edit_ids = {"ids": [job.id for job in made]}
    try:
        if batch is not None:
            session.flush()  # the batch first: the jobs refer to it
        session.add_all(made)
        session.commit()
    except IntegrityError:
        session.rollback()
        raise RequestError(
            ErrorCode.IDEMPOTENCY_IN_PROGRESS, "a request with this Idempotency-Key is being created"
        ) from None
    try:
        for job, how in zip(made, new, strict=True):
            job.spec = how.store(job.id).model_dump(mode="json")
            job.state = JobState.QUEUED
        session.commit()
        for job, how in zip(made, new, strict=True):
            how.send(job.id)
    except Exception:
        session.rollback()
        for job in made:
            storage.delete_prefix(jobs.job_prefix(job.id))
            session.delete(session.get(JobRow, job.id))
        if batch is not None:
            session.delete(session.get(BatchRow, batch.id))
        session.commit()
        raise
    return made


def store_video(
    job_id: str, video_file: Path | None, video_asset: Asset | None, video_url: str | None, storage: Storage
) -> InputRef:
    """The video as the job keeps it: an uploaded part or an asset copied under the job's prefix, or its URL."""
    prefix = jobs.job_prefix(job_id) + "input/"
    if video_file is not None:
        storage.put_file(prefix + "video", video_file, "application/octet-stream")
        return InputRef(key=prefix + "video")
    if video_asset is not None:
        uploads.snapshot(storage, video_asset, prefix + "video", "video")
        return InputRef(key=prefix + "video", name=video_asset.filename or None)
    assert video_url is not None  # the sources were checked: the video came exactly once
    return InputRef(url=video_url, name=unquote(urlsplit(video_url).path.rsplit("/", 1)[-1])[:300] or None)


def _store_inputs(
    job_id: str,
    body: schemas.EditCreate,
    submission: Submission,
    video_asset: Asset | None,
    speech_assets: list[Asset],
    dub_assets: dict[str, Asset | None],
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

    video = store_video(job_id, submission.video_file, video_asset, body.video_url, storage)
    speech = [part(path, f"speech{i}") for i, path in enumerate(submission.speech_files)]
    speech += [copy(asset, f"speech{len(speech) + i}", "speech") for i, asset in enumerate(speech_assets)]
    speech += [InputRef(url=u) for u in body.speech_urls]

    def single(name: str, part_file: Path | None, kind: str) -> InputRef | None:
        asset, url = dub_assets.get(name), getattr(body, f"{name}_url")
        if part_file is not None:
            return part(part_file, name)
        if asset is not None:
            return copy(asset, name, kind)
        return InputRef(url=url) if url is not None else None

    timeline = timelines.stored(body.timeline, segment_assets, copy) if body.timeline is not None else None
    stored = {
        "video": video,
        "speech": tuple(speech),
        "speech_track": single("speech_track", submission.speech_track_file, "speech"),
        "pose_video": single("pose_video", submission.pose_video_file, "video"),
        "expression_reference": single("expression_reference", submission.expression_reference_file, "video"),
        "eye_video": single("eye_video", submission.eye_video_file, "video"),
        "timeline": timeline,
    }
    return EditSpec.model_validate({**carried(body, EditSpec), **stored})


def carried(body: BaseModel, spec: type[BaseModel]) -> dict[str, Any]:
    """Every field the request and the spec share (the target and each choice), in one call, so a new
    option is carried without a line here. The caller puts the stored inputs over it (parts, assets and
    URLs as references, a timeline with its clips stored)."""
    return body.model_dump(include=set(type(body).model_fields) & set(spec.model_fields))


@dataclass(frozen=True)
class Family:
    """The jobs one group of routes serves by id and lists: /v1/edits reads edits and clip previews (both
    submitted there) and lists edits; /v1/previews reads and lists clip previews and contact sheets."""

    served: tuple[JobKind, ...]
    listed: tuple[JobKind, ...]
    missing: ErrorCode
    noun: str


EDITS = Family((JobKind.EDIT, JobKind.CLIP), (JobKind.EDIT,), ErrorCode.EDIT_NOT_FOUND, "edit")
PREVIEWS = Family((JobKind.CLIP, JobKind.SHEET), (JobKind.CLIP, JobKind.SHEET), ErrorCode.PREVIEW_NOT_FOUND, "preview")


def list_page(
    session: Session,
    key: ApiKey,
    state: JobState | None,
    limit: int,
    cursor: str | None,
    family: Family = EDITS,
) -> tuple[list[JobRow], str | None]:
    """One page of the key's visible jobs, newest first, and the cursor of the next page (None at the end)."""
    query = jobs.visible(select(JobRow)).where(JobRow.key_id == key.id, JobRow.kind.in_(family.listed))
    if state is not None:
        query = query.where(JobRow.state == state)
    return paging.page(session, query, (JobRow.created_at, JobRow.id), limit, cursor)


def owned(session: Session, key: ApiKey, job_id: str, *, lock: bool = False, family: Family = EDITS) -> JobRow:
    """The caller's visible job, else 404 (another key's id looks exactly like a missing one)."""
    job = jobs.lock(session, job_id) if lock else session.get(JobRow, job_id)
    if job is None or job.key_id != key.id or job.state == JobState.CREATING or job.kind not in family.served:
        raise RequestError(family.missing, f"no {family.noun} {job_id}")
    return job


def cancel(
    session: Session, settings: JobsSettings, storage: Storage, key: ApiKey, job_id: str, family: Family = EDITS
) -> JobRow:
    """Queued: canceled at once. Running: its worker stops within one chunk of frames."""
    job = owned(session, key, job_id, lock=True, family=family)
    jobs.request_cancel(job)
    canceled = job.state == JobState.CANCELED
    event = webhooks.emit(session, job, webhooks.event_name(job, "canceled"), storage) if canceled else None
    ended = batches.job_ended(session, job) if canceled else None
    session.commit()
    webhooks.dispatch(settings, [event, ended])
    return job


def delete(session: Session, storage: Storage, key: ApiKey, job_id: str, family: Family = EDITS) -> None:
    """A finished edit's record and files; a queued or running one must be canceled first. The files
    go first: a failure leaves the record, and deleting again finishes the job."""
    job = owned(session, key, job_id, family=family)
    if not job.state.final:
        noun = family.noun
        raise RequestError(ErrorCode.EDIT_ACTIVE, f"cancel the {noun} first; delete works on finished {noun}s")
    storage.delete_prefix(jobs.job_prefix(job.id))
    session.delete(job)
    session.commit()
