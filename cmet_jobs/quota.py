"""A key's quota, without HTTP: jobs queued or running (previews among them), and per-minute rates of
submissions, probes and asset records. Every kind of work a key can cause counts against a limit, so no
key can fill a queue others wait in. The limits are the key's (`max_concurrent_jobs`,
`max_submissions_per_minute`) and the deployment's settings (`previews_per_key`, `probes_per_minute`,
`uploads_per_minute`, `max_assets_per_key`)."""

from __future__ import annotations

import math
from datetime import timedelta

import sqlalchemy as sa
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from cmet_core.errors import ErrorCode
from cmet_jobs import jobs
from cmet_jobs.db.models import ApiKey, CustomEmotion, SubmissionStamp, now
from cmet_jobs.errors import RequestError
from cmet_jobs.states import EmotionState, JobKind, Work

RATE_WINDOW = timedelta(minutes=1)


def check(session: Session, key: ApiKey, previews: int | None = None, *, take: bool = True, count: int = 1) -> None:
    """Concurrent jobs (custom emotions still being built count as jobs), at most `previews` of them
    previews where given, and submissions per minute. With `take` (the last check before the insert)
    the key's row stays locked until the job is inserted (PostgreSQL), so two submissions at once
    cannot both take the last slot, and a stamp is added; it commits with the job (a request refused
    later leaves none). Without it, the same counts are only read: submissions run it before their slow
    checks (URL probes, media), so a key over its quota holds no submission thread. A batch checks its
    `count` edits at once: all of them fit, or none is taken."""
    if count > 1 and count > min(key.max_concurrent_jobs, key.max_submissions_per_minute):
        raise RequestError(
            ErrorCode.BATCH_TOO_LARGE,
            f"{count} edits at once exceed this key's limits ({key.max_concurrent_jobs} queued or running, "
            f"{key.max_submissions_per_minute} a minute); split the batch",
        )
    if take:
        lock_key(session, key)
    active = jobs.active_count(session, key.id) + _pending_emotions(session, key.id)
    if active + count > key.max_concurrent_jobs:
        # when a running job ends is unknown: a short, fixed wait
        raise RequestError(
            ErrorCode.CONCURRENT_LIMIT,
            f"{active} of this key's {key.max_concurrent_jobs} jobs are queued or running; {count} more do not fit",
            {"Retry-After": "10"},
        )
    if previews is not None and jobs.active_count(session, key.id, PREVIEW_KINDS) >= previews:
        raise RequestError(
            ErrorCode.CONCURRENT_LIMIT,
            f"{previews} previews are already queued or running for this key",
            {"Retry-After": "5"},
        )
    check_rate(session, key, Work.JOB, key.max_submissions_per_minute, take=take, count=count)


PREVIEW_KINDS = (JobKind.CLIP, JobKind.SHEET)


def lock_key(session: Session, key: ApiKey) -> None:
    """The key's row locked until the transaction ends: its counts hold until the new record is in."""
    session.execute(select(ApiKey.id).where(ApiKey.id == key.id).with_for_update())


def check_rate(
    session: Session, key: ApiKey, work: Work, per_minute: int, *, take: bool = True, count: int = 1
) -> None:
    """At most `per_minute` stamps of `work` in the last minute; with `take`, `count` more are added. The
    rate counts stamps, never records, so deleting jobs or assets frees nothing."""
    moment = now()
    mine = (SubmissionStamp.key_id == key.id) & (SubmissionStamp.work == work)
    if take:
        session.execute(sa.delete(SubmissionStamp).where(mine, SubmissionStamp.at < moment - RATE_WINDOW))
    window = select(SubmissionStamp.at).where(mine, SubmissionStamp.at >= moment - RATE_WINDOW)
    recent = session.scalar(select(func.count()).select_from(window.subquery())) or 0
    if recent + count > per_minute:
        # `count` slots are free once the stamp that puts the key at its limit leaves the one-minute window
        freeing = session.scalar(window.order_by(SubmissionStamp.at).offset(recent + count - 1 - per_minute).limit(1))
        wait = math.ceil((freeing + RATE_WINDOW - moment).total_seconds()) if freeing is not None else 60
        noun = {Work.JOB: "submissions", Work.PROBE: "probes", Work.UPLOAD: "uploads"}[work]
        retry = {"Retry-After": str(max(1, wait))}
        raise RequestError(ErrorCode.RATE_LIMIT, f"more than {per_minute} {noun} in the last minute", retry)
    if take:
        session.add_all([SubmissionStamp(key_id=key.id, at=moment, work=work) for _ in range(count)])


def _pending_emotions(session: Session, key_id: str) -> int:
    """Custom emotions waiting for a worker to build them: each is a job on the edit queue."""
    mine = (CustomEmotion.key_id == key_id) & (CustomEmotion.state == EmotionState.PENDING)
    return int(session.scalar(select(func.count()).select_from(CustomEmotion).where(mine)) or 0)
