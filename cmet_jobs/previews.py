"""Contact sheets as the API offers them, without HTTP: submit (list, read, cancel and delete go through
`edits` with the `PREVIEWS` family).

A sheet is a job like an edit: the same idempotency, checks, quota, record and queue message (on the
preview queue), undone together when a step after the insert fails (`submissions.create_job`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.orm import Session

from cmet_core.errors import ErrorCode
from cmet_core.options import EditChoices
from cmet_jobs import emotions, queue, quota, schemas, submissions, uploads
from cmet_jobs.db.models import ApiKey, Asset, JobRow
from cmet_jobs.errors import RequestError
from cmet_jobs.inputs import check_emotion, check_video
from cmet_jobs.settings import JobsSettings
from cmet_jobs.spec import SheetSpec
from cmet_jobs.states import JobKind
from cmet_jobs.storage import Storage


@dataclass(frozen=True)
class SheetSubmission:
    """A parsed contact sheet request: the body, the video if it came as a part (saved locally), its Idempotency-Key."""

    body: schemas.PreviewCreate
    video_file: Path | None = None
    idempotency_key: str | None = None

    @property
    def files(self) -> list[Path]:
        return [self.video_file] if self.video_file is not None else []


def _rows(session: Session, key: ApiKey, body: schemas.PreviewCreate) -> tuple[str, ...]:
    """The rows with custom emotion ids resolved to names, each checked at the sheet's strongest intensity."""
    library = emotions.library_for_key(session, key.id)
    rows = tuple(emotions.resolve_id(session, key.id, e) for e in body.emotions)
    for row in rows:
        check_emotion(row, max(body.intensities), library)
    if len(set(rows)) != len(rows):
        raise RequestError(ErrorCode.INVALID_REQUEST, "emotions repeat (an id and its name name one emotion)")
    return rows


def submit(
    session: Session, settings: JobsSettings, storage: Storage, key: ApiKey, submission: SheetSubmission
) -> JobRow:
    """Queue a contact sheet, or return the job an identical earlier request with the same Idempotency-Key made."""
    digest = submissions.request_hash(submission)
    earlier = submissions.replayed(session, key, submission.idempotency_key, digest, JobRow)
    if earlier is not None:
        return earlier
    body = submission.body
    submissions.check_one_video(submission.video_file, body.video_url, body.video_asset)
    quota.check(session, key, settings.previews_per_key, take=False)
    rows = _rows(session, key, body)
    video_urls = [(body.video_url, settings.max_video_bytes)] if body.video_url is not None else []
    submissions.check_url_list(settings, video_urls, body.webhook_url)
    video = None
    if submission.video_file is not None:
        video = check_video(submission.video_file, EditChoices.of(body), settings.limits())
        if body.frame is not None and body.frame >= video.frame_count:
            last = video.frame_count - 1
            raise RequestError(ErrorCode.BAD_PREVIEW_FRAME, f"frame {body.frame} is outside the clip (frames 0-{last})")
    quota.check(session, key, settings.previews_per_key)
    asset = uploads.usable(session, storage, key, body.video_asset, "video") if body.video_asset else None
    return submissions.create_job(
        session,
        key,
        submissions.NewJob(
            JobKind.SHEET,
            digest,
            submission.idempotency_key,
            body.webhook_url,
            list(body.webhook_events),
            lambda job_id: _spec(job_id, body, rows, submission, asset, storage),
            lambda job_id: queue.submit(settings, job_id, video, JobKind.SHEET),
        ),
        storage,
    )


def _spec(
    job_id: str,
    body: schemas.PreviewCreate,
    rows: tuple[str, ...],
    submission: SheetSubmission,
    asset: Asset | None,
    storage: Storage,
) -> SheetSpec:
    video = submissions.store_video(job_id, submission.video_file, asset, body.video_url, storage)
    return SheetSpec.model_validate({**submissions.carried(body, SheetSpec), "video": video, "emotions": rows})
