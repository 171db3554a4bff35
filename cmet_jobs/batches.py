"""A batch of edits as the API shows it, and its end: read how far its edits are, and record
`batch.completed` when the last one ends (`cmet_jobs.batch_submit` makes batches)."""

from __future__ import annotations

from collections import Counter

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from cmet_core.errors import ErrorCode
from cmet_jobs import schemas, webhooks
from cmet_jobs.db.models import ApiKey, BatchRow, JobRow, now
from cmet_jobs.errors import RequestError
from cmet_jobs.states import BatchState, JobState

COMPLETED = "batch.completed"


def owned(session: Session, key: ApiKey, batch_id: str) -> BatchRow:
    """The caller's batch, else 404 (another key's id looks exactly like a missing one)."""
    batch = session.get(BatchRow, batch_id)
    if batch is None or batch.key_id != key.id or _still_creating(session, batch):
        raise RequestError(ErrorCode.BATCH_NOT_FOUND, f"no batch {batch_id}")
    return batch


def _still_creating(session: Session, batch: BatchRow) -> bool:
    query = select(JobRow.id).where(JobRow.batch_id == batch.id, JobRow.state == JobState.CREATING).limit(1)
    return session.scalar(query) is not None


def to_schema(session: Session, batch: BatchRow) -> schemas.Batch:
    """The batch with its edits counted by state (read in one query)."""
    ids = list(batch.edit_ids.get("ids", []))
    rows = session.execute(
        select(JobRow.state, func.count()).where(JobRow.batch_id == batch.id).group_by(JobRow.state)
    ).all()
    states = Counter({JobState(state): int(n) for state, n in rows})
    counts = schemas.BatchCounts(
        queued=states[JobState.QUEUED] + states[JobState.CREATING],
        running=states[JobState.RUNNING],
        succeeded=states[JobState.SUCCEEDED],
        failed=states[JobState.FAILED],
        canceled=states[JobState.CANCELED],
        deleted=len(ids) - sum(states.values()),
    )
    return schemas.Batch(
        id=batch.id,
        state=BatchState.COMPLETED if batch.completed_at is not None else BatchState.RUNNING,
        total=len(ids),
        counts=counts,
        edit_ids=ids,
        created_at=batch.created_at,
        completed_at=batch.completed_at,
    )


def job_ended(session: Session, job: JobRow) -> str | None:
    """Called in the transaction that made `job` final: if it was its batch's last edit to end, the batch
    is completed and its `batch.completed` recorded (the delivery id, to dispatch after commit). The
    batch's row is locked first, so of two edits ending at once the later one sees the other's end."""
    if job.batch_id is None:
        return None
    session.flush()
    batch = session.scalar(select(BatchRow).where(BatchRow.id == job.batch_id).with_for_update())
    if batch is None or batch.completed_at is not None:
        return None
    unfinished = (JobState.CREATING, JobState.QUEUED, JobState.RUNNING)
    waiting = select(JobRow.id).where(JobRow.batch_id == batch.id, JobRow.state.in_(unfinished)).limit(1)
    if session.scalar(waiting) is not None:
        return None
    batch.completed_at = now()
    return webhooks.emit_batch(session, batch, COMPLETED, to_schema(session, batch))


def drop_if_empty(session: Session, batch_id: str | None) -> None:
    """Delete the batch once none of its jobs is left (its API process died before they were stored), so
    its Idempotency-Key starts a new batch, as a single job's does."""
    if batch_id is None or session.scalar(select(JobRow.id).where(JobRow.batch_id == batch_id).limit(1)):
        return
    batch = session.get(BatchRow, batch_id)
    if batch is not None:
        session.delete(batch)
