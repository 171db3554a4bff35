"""The job state machine on the record, shared by the API (create, cancel) and the worker (run).

Every transition is one short transaction that re-reads the row, so a cancel from the API and
progress from the worker cannot overwrite each other's state.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any, TypeVar

from sqlalchemy import ColumnElement, Select, func, select
from sqlalchemy.orm import Session

from cmet_core.errors import ErrorCode
from cmet_core.stages import Stage
from cmet_jobs import schemas, timelines
from cmet_jobs.db.models import JobRow, WorkerBeat, now
from cmet_jobs.results import EditResult, JobResult, SheetResult
from cmet_jobs.spec import EditSpec, SheetSpec
from cmet_jobs.states import JobKind, JobState
from cmet_jobs.storage import Storage

T = TypeVar("T")

OUTPUT_NAME = "output.mp4"
SHEET_NAME = "sheet.png"
CELLS_FOLDER = "cells"


def job_prefix(job_id: str) -> str:
    return f"jobs/{job_id}/"


def output_key(job_id: str) -> str:
    """Deterministic: a re-run after a crash overwrites the same object."""
    return job_prefix(job_id) + OUTPUT_NAME


def cell_key(job_id: str, name: str) -> str:
    return f"{job_prefix(job_id)}{CELLS_FOLDER}/{name}"


SPECS: dict[JobKind, type[EditSpec] | type[SheetSpec]] = {
    JobKind.EDIT: EditSpec,
    JobKind.CLIP: EditSpec,
    JobKind.SHEET: SheetSpec,
}
RESULTS: dict[JobKind, type[JobResult]] = {
    JobKind.EDIT: EditResult,
    JobKind.CLIP: EditResult,
    JobKind.SHEET: SheetResult,
}
"""The stored spec and result of each kind: the record's JSON is read only through `spec_of`, `shown_spec` and
`result_of`."""


def spec_of(job: JobRow) -> EditSpec | SheetSpec:
    """The spec a worker runs: a contact sheet's `SheetSpec`, any other kind's `EditSpec`. A field this
    version does not know (a newer API's option) is refused: running without it would drop it silently."""
    return SPECS[job.kind].model_validate(job.spec)


def shown_spec(job: JobRow) -> EditSpec | SheetSpec:
    """The spec as the API shows it: fields this version does not know (a newer API wrote them during a
    rolling upgrade) are left out, where `spec_of` refuses them; showing a record without one loses nothing."""
    model = SPECS[job.kind]
    return model.model_validate({name: value for name, value in job.spec.items() if name in model.model_fields})


def result_of(job: JobRow) -> JobResult | None:
    """What a succeeded job made, as the model of its kind; None before it succeeded."""
    return RESULTS[job.kind].model_validate(job.result) if job.result else None


def kinds(session: Session, job_ids: list[str]) -> dict[str, JobKind]:
    """What each job makes, for re-queueing ids on the right queue."""
    if not job_ids:
        return {}
    return {
        job_id: JobKind(kind)
        for job_id, kind in session.execute(select(JobRow.id, JobRow.kind).where(JobRow.id.in_(job_ids)))
    }


def visible(query: Select[T]) -> Select[T]:
    """Only jobs a client or a worker may see: not those still being created by the API."""
    return query.where(JobRow.state != JobState.CREATING)


def _record(job: JobRow) -> dict[str, Any]:
    """The fields of `schemas.JobRecord` that every job shows, whatever its kind: the record's own columns
    by name, and its error."""
    shown = {name: getattr(job, name) for name in schemas.JobRecord.model_fields if name != "error"}
    return {**shown, "error": schemas.job_error(job.error_code, job.error_message)}


def to_schema(job: JobRow, storage: Storage) -> schemas.Job:
    """An edit or a clip preview as `/v1/edits` shows it, its output URL signed anew on every read."""
    spec, result = shown_spec(job), result_of(job)
    assert isinstance(spec, EditSpec) and not isinstance(result, SheetResult), job.kind
    succeeded = job.state == JobState.SUCCEEDED and job.output_key
    return schemas.Job(
        **_record(job),
        video_name=spec.video.name,
        emotion=spec.emotion,
        intensity=spec.intensity,
        timeline=timelines.shown(spec.timeline),
        faces=list(spec.faces) or None,
        result=_shown_result(result),
        output_url=storage.download_url(job.output_key, f"{job.id}.mp4") if succeeded and job.output_key else None,
        preview_s=spec.preview_s,
        preview_start_s=spec.preview_start_s,
    )


def _shown_result(result: EditResult | None) -> schemas.EditResultInfo | None:
    return schemas.EditResultInfo.model_validate(result.model_dump()) if result is not None else None


def to_preview(job: JobRow, storage: Storage) -> schemas.Preview:
    """A preview as the API shows it, its URLs signed anew on every read."""
    key = job.output_key if job.state == JobState.SUCCEEDED else None
    return _sheet(job, storage, key) if job.kind == JobKind.SHEET else _clip(job, storage, key)


def _sheet(job: JobRow, storage: Storage, key: str | None) -> schemas.Preview:
    spec, result = shown_spec(job), result_of(job)
    assert isinstance(spec, SheetSpec) and not isinstance(result, EditResult), job.kind
    stored = result.cells if result is not None and key is not None else []
    return schemas.Preview(
        **_record(job),
        kind="sheet",
        emotions=list(spec.emotions),
        intensities=list(spec.intensities),
        frame=result.frame if result is not None else None,
        preview_s=None,
        preview_start_s=None,
        sheet_url=storage.download_url(key, f"{job.id}.png") if key is not None else None,
        cells=[
            schemas.PreviewCell(
                emotion=c.emotion, intensity=c.intensity, url=storage.download_url(c.key, c.key.rsplit("/")[-1])
            )
            for c in stored
        ],
        output_url=None,
        result=None,
    )


def _clip(job: JobRow, storage: Storage, key: str | None) -> schemas.Preview:
    spec, result = shown_spec(job), result_of(job)
    assert isinstance(spec, EditSpec) and not isinstance(result, SheetResult), job.kind
    return schemas.Preview(
        **_record(job),
        kind="clip",
        emotions=[spec.emotion] if spec.emotion is not None else [],
        intensities=[spec.intensity],
        frame=None,
        preview_s=spec.preview_s,
        preview_start_s=spec.preview_start_s,
        sheet_url=None,
        cells=[],
        output_url=storage.download_url(key, f"{job.id}.mp4") if key is not None else None,
        result=_shown_result(result),
    )


def payload(job: JobRow, storage: Storage) -> schemas.Job | schemas.Preview:
    """What a webhook carries: the job as the API shows it where it is listed."""
    return to_preview(job, storage) if job.kind.preview else to_schema(job, storage)


def active_count(session: Session, key_id: str, kinds: tuple[JobKind, ...] | None = None) -> int:
    """The key's jobs queued or running (of `kinds`, else of every kind)."""
    states = (JobState.QUEUED, JobState.RUNNING)
    query = select(func.count()).select_from(JobRow).where(JobRow.key_id == key_id, JobRow.state.in_(states))
    if kinds is not None:
        query = query.where(JobRow.kind.in_(kinds))
    return int(session.scalar(query) or 0)


def previews_ahead_of_an_edit(session: Session) -> int | None:
    """Previews (of any key) started since the oldest queued edit was created (None: no edit waits); past
    a limit, previews step behind it."""
    oldest = session.scalar(
        select(func.min(JobRow.created_at)).where(JobRow.kind == JobKind.EDIT, JobRow.state == JobState.QUEUED)
    )
    if oldest is None:
        return None
    started = select(func.count()).select_from(JobRow).where(JobRow.kind != JobKind.EDIT, JobRow.started_at >= oldest)
    return int(session.scalar(started) or 0)


def lock(session: Session, job_id: str) -> JobRow | None:
    return session.scalar(select(JobRow).where(JobRow.id == job_id).with_for_update())


class JobBusy(Exception):
    """Another worker holds the job's lease (a duplicate message); try again after `retry_in` seconds."""

    def __init__(self, retry_in: float) -> None:
        super().__init__(f"job leased for {retry_in:.1f} s more")
        self.retry_in = retry_in


def holds(job: JobRow | None, attempt: int) -> bool:
    """Whether the worker that started `attempt` still runs the job. Once its lease lapsed and another
    worker took the job over (a new attempt), or the job was put back or ended, the old worker may
    write nothing more to the record: a worker cut off from the database, not dead, comes back later."""
    return job is not None and job.state == JobState.RUNNING and job.attempts == attempt


def keep(job: JobRow | None, attempt: int, lease_s: float) -> bool:
    """On a locked row: extend the lease of the job's `attempt` by `lease_s`; False when that attempt lost the
    job. A sweeper that found the lease lapsed (the database was away for longer, or the worker stalled) put
    the job back to `queued` with its count kept; until another worker starts it, the run takes it back, and
    the new message finds the lease fresh (`JobBusy`)."""
    if job is None:
        return False
    put_back = job.state == JobState.QUEUED and job.attempts == attempt and job.lease_until is None
    if not (holds(job, attempt) or put_back):
        return False
    job.state, job.lease_until = JobState.RUNNING, now() + timedelta(seconds=lease_s)
    return True


def renew_lease(session: Session, job_id: str, attempt: int, lease_s: float) -> bool:
    """`keep` on the job's row."""
    return keep(lock(session, job_id), attempt, lease_s)


def start(session: Session, job_id: str, max_attempts: int, lease_s: float) -> JobRow | None:
    """Claim a job for running, leased for `lease_s`; None when there is nothing to run (gone or already final).

    A running job whose lease is still fresh belongs to a live worker: JobBusy. One whose lease
    lapsed lost its worker (killed, machine gone) and is taken over: the attempt is counted, and its
    number (`attempts`) is this run's claim that `holds` checks. A job this call ends instead
    (cancel requested, attempts used up) is returned in its final state, so the caller tells its
    subscriber like of any other end.
    """
    job = lock(session, job_id)
    if job is None or job.state == JobState.CREATING or job.state.final:
        return None
    if job.state == JobState.RUNNING and job.lease_until is not None and job.lease_until > now():
        raise JobBusy((job.lease_until - now()).total_seconds() + 0.5)
    if job.cancel_requested:
        finish(job, JobState.CANCELED)
        return job
    job.attempts += 1
    if job.attempts > max_attempts:
        finish(
            job,
            JobState.FAILED,
            ErrorCode.TOO_MANY_ATTEMPTS,
            f"the job was started {max_attempts} times without finishing",
        )
        return job
    job.state, job.started_at, job.stage, job.progress = JobState.RUNNING, job.started_at or now(), Stage.STARTING, 0.0
    job.lease_until = now() + timedelta(seconds=lease_s)
    return job


def finish(
    job: JobRow,
    state: JobState,
    code: ErrorCode | None = None,
    message: str | None = None,
    result: JobResult | None = None,
) -> None:
    assert state.final, state
    job.state, job.finished_at, job.error_code, job.error_message = state, now(), code, message
    job.stage = None
    if state == JobState.SUCCEEDED:
        job.progress, job.result = 1.0, result.model_dump(mode="json", exclude_defaults=True) if result else None


def abandoned_creations(session: Session, older_than_s: float) -> list[str]:
    """Jobs whose API process died while creating them (inputs half stored, never queued)."""
    cutoff = now() - timedelta(seconds=older_than_s)
    return list(session.scalars(select(JobRow.id).where(JobRow.state == JobState.CREATING, JobRow.created_at < cutoff)))


def retry_later(session: Session, job_id: str, attempt: int) -> bool:
    """Hand a running job back to the queue without counting the attempt (a transient storage fault, or
    a worker that is stopping); False, and nothing changed, when `attempt` no longer holds the job."""
    job = lock(session, job_id)
    if job is None or not holds(job, attempt):
        return False
    job.state, job.attempts, job.stage, job.lease_until = JobState.QUEUED, max(0, job.attempts - 1), None, None
    return True


def request_cancel(job: JobRow) -> None:
    """Queued jobs end at once; a running one is stopped by its worker at the next chunk."""
    if job.state.final:
        return
    job.cancel_requested = True
    if job.state == JobState.QUEUED:
        finish(job, JobState.CANCELED)


def unfinished_ids(session: Session, idle_for_s: float = 0.0) -> list[str]:
    """Queued jobs untouched for `idle_for_s` (0: all, as after a restart of everything), and
    running ones whose lease lapsed. Both may have lost their queue message."""
    cutoff = now() - timedelta(seconds=idle_for_s)
    queued = (JobRow.state == JobState.QUEUED) & (JobRow.updated_at <= cutoff)
    rows = session.scalars(select(JobRow.id).where(queued | _orphaned()).order_by(JobRow.created_at))
    return list(rows)


def _orphaned() -> ColumnElement[bool]:
    return (JobRow.state == JobState.RUNNING) & ((JobRow.lease_until.is_(None)) | (JobRow.lease_until < now()))


def orphaned_ids(session: Session) -> list[str]:
    """Running jobs whose worker stopped renewing the lease: killed, or its machine gone."""
    return list(session.scalars(select(JobRow.id).where(_orphaned())))


def requeued(session: Session, job_ids: list[str]) -> None:
    """Mark jobs as handed to the queue again: an orphaned running job goes back to `queued`
    (its attempt stays counted), and the next reconciliation leaves them alone for a while."""
    for job_id in job_ids:
        job = lock(session, job_id)
        if job is None:
            continue
        job.updated_at = now()
        if job.state == JobState.RUNNING:
            job.state, job.stage, job.lease_until = JobState.QUEUED, None, None


WORKER_FRESH_S = 30.0


def worker_beat(session: Session, name: str) -> None:
    beat = session.get(WorkerBeat, name)
    if beat is None:
        session.add(WorkerBeat(name=name, seen_at=now()))
    else:
        beat.seen_at = now()


def workers_seen(session: Session) -> int:
    """Workers alive in the last WORKER_FRESH_S seconds."""
    since = now() - timedelta(seconds=WORKER_FRESH_S)
    return int(session.scalar(select(func.count()).select_from(WorkerBeat).where(WorkerBeat.seen_at >= since)) or 0)
