"""Submitting a batch of edits, without HTTP.

A batch is accepted whole or refused whole. Every edit passes `submissions.checked` (the same checks as a
submission of its own, each with its own options), then the key's quotas are taken for all of them at once
(`quota.check(count=n)`: n jobs, n submissions), then `submissions.create_jobs` inserts the batch and its
jobs together and removes them all if storing or queueing any fails. The Idempotency-Key covers the whole
body (decision 0003's rules, on the batch's record): the same key and body answer the same batch.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from pydantic import BaseModel
from sqlalchemy.orm import Session

from cmet_core.errors import ErrorCode
from cmet_jobs import quota, schemas, submissions
from cmet_jobs.db.models import ApiKey, BatchRow, new_id
from cmet_jobs.errors import RequestError
from cmet_jobs.settings import JobsSettings
from cmet_jobs.storage import Storage


@dataclass(frozen=True)
class _Whole:
    """The batch's body as `submissions.request_hash` digests it: JSON only, no file parts."""

    body: BaseModel
    files: list[Path] = field(default_factory=list)


def submit(
    session: Session,
    settings: JobsSettings,
    storage: Storage,
    key: ApiKey,
    body: schemas.BatchCreate,
    idempotency_key: str | None,
) -> BatchRow:
    """Queue every edit of `body` as one batch, or return the batch an identical earlier request made."""
    digest = submissions.request_hash(_Whole(body))
    earlier = submissions.replayed(session, key, idempotency_key, digest, BatchRow)
    if earlier is not None:
        return earlier
    count = len(body.edits)
    if count > settings.max_batch_edits:
        raise RequestError(
            ErrorCode.BATCH_TOO_LARGE, f"{count} edits; a batch holds at most {settings.max_batch_edits}"
        )
    quota.check(session, key, take=False, count=count)
    ready = [_checked(session, settings, storage, key, i, edit) for i, edit in enumerate(body.edits)]
    submissions.check_url_list(settings, [], body.webhook_url)
    quota.check(session, key, count=count)
    batch = BatchRow(
        id=new_id("bat"),  # now: its jobs refer to it before the insert
        key_id=key.id,
        idempotency_key=idempotency_key,
        request_hash=digest,
        webhook_url=body.webhook_url,
        webhook_events={"events": list(body.webhook_events)},
    )
    new = [edit.job(settings, storage, None, None) for edit in ready]
    submissions.create_jobs(session, key, new, storage, batch)
    return batch


def _checked(
    session: Session, settings: JobsSettings, storage: Storage, key: ApiKey, index: int, edit: schemas.EditCreate
) -> submissions.Checked:
    """One edit's checks; a refusal names the edit (`edits[i]`) and keeps its code."""
    try:
        if edit.dry_run or edit.preview_s is not None:
            raise RequestError(ErrorCode.INVALID_REQUEST, "a batch holds full edits: no dry_run, no preview_s")
        return submissions.checked(session, settings, storage, key, submissions.Submission(edit), quota_of=0)
    except RequestError as exc:
        raise RequestError(exc.code, f"edits[{index}]: {exc.detail}", exc.headers, exc.errors) from None
