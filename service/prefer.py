"""`Prefer: wait=N` (RFC 7240) on a submission: answer with the finished job when it ends within N seconds
(at most `max_prefer_wait_s`), else the usual 202. Short jobs (a clip preview, a sheet) then need one
request; the server polls the record as the event stream does, holding no database connection meanwhile."""

from __future__ import annotations

import re
from collections.abc import Callable

from fastapi import Response

from cmet_jobs import events
from cmet_jobs.db.models import JobRow
from cmet_jobs.settings import JobsSettings
from cmet_jobs.storage import Storage

_WAIT = re.compile(r"(?:^|[,;\s])wait\s*=\s*\"?(\d{1,6})\"?", re.IGNORECASE)
HEADER_DOC = {
    "name": "Prefer",
    "in": "header",
    "required": False,
    "schema": {"type": "string"},
    "description": "`wait=N` (RFC 7240), e.g. `wait=30`: hold the answer until the job ends, at most N seconds "
    "(capped by `CMET_MAX_PREFER_WAIT_S`). Ended in time: 200 with the job; else 202. `Preference-Applied` says "
    "the wait used.",
}


def wait_seconds(header: str | None, limit: float) -> float:
    """The wait a `Prefer` header asks for, capped at `limit`; 0 when it asks none."""
    found = _WAIT.search(header or "")
    return min(float(found.group(1)), limit) if found else 0.0


async def answer(
    header: str | None,
    settings: JobsSettings,
    storage: Storage,
    job: JobRow,
    response: Response,
    show: Callable[[JobRow, Storage], events.Shown],
) -> events.Shown:
    """The job to answer with: the finished one (status 200) if the client asked to wait and it ended in time."""
    seconds = wait_seconds(header, settings.max_prefer_wait_s)
    if seconds <= 0:
        return show(job, storage)
    response.headers["Preference-Applied"] = f"wait={seconds:g}"
    final = await events.final_within(settings.db_url, storage, job.key_id, job.id, seconds, show)
    if final is None:
        return show(job, storage)
    response.status_code = 200
    return final
