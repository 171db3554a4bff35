"""A job's progress as server-sent events (`GET /v1/edits/{id}/events`, `GET /v1/previews/{id}/events`),
without HTTP.

The stream polls the job record every `POLL_S` in async code: each poll is one primary-key read
in a session opened and closed on a worker thread for that read alone, so an open stream holds
no database connection and no thread between polls. The record is the truth (decision 0001):
the worker already writes state, stage and progress there, and `cmet serve` has no Redis for a
pub/sub channel, so polling works the same on every deployment at the cost of one indexed read
per stream and interval.

Events, each with the job as JSON in `data` (`schemas.Job` for an edit, `schemas.Preview` for a preview):
- `state`: the first event, then whenever the state changes;
- `progress`: the stage or progress changed;
- `result`: the job reached a final state (with `output_url` on success); the stream ends;
- `error`: the job was deleted meanwhile (a problem body with `edit_not_found`, `preview_not_found` for
  a preview); the stream ends.
A comment line every `KEEPALIVE_S` keeps proxies from closing a quiet stream.

The stream samples the record, so it tells states that last at least one poll: a job that starts and
ends between two reads goes from `state` (queued) straight to `result`, whose `started_at` says it ran.
A client that needs every step reads the webhooks (`edit.running` is recorded when the worker starts).
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Callable

import anyio

from cmet_core.errors import ErrorCode
from cmet_jobs import jobs, schemas
from cmet_jobs.db.models import JobRow
from cmet_jobs.db.session import new_session
from cmet_jobs.storage import Storage

POLL_S = 0.5
KEEPALIVE_S = 15.0
MEDIA_TYPE = "text/event-stream"
HEADERS = {"Cache-Control": "no-store", "X-Accel-Buffering": "no"}
"""A stream's response headers: never cached, never buffered by nginx."""


def frame(event: str, data: str, event_id: int | None = None) -> bytes:
    """One SSE message; `data` is JSON, so it holds no newline."""
    head = f"id: {event_id}\n" if event_id is not None else ""
    return f"{head}event: {event}\ndata: {data}\n\n".encode()


Shown = schemas.Job | schemas.Preview


def _reader(
    db_url: str, storage: Storage, key_id: str, job_id: str, show: Callable[[JobRow, Storage], Shown]
) -> Callable[[], Shown | None]:
    def read() -> Shown | None:
        session = new_session(db_url)
        try:
            job = session.get(JobRow, job_id)
            if job is None or job.key_id != key_id:
                return None
            return show(job, storage)
        finally:
            session.close()

    return read


async def final_within(
    db_url: str, storage: Storage, key_id: str, job_id: str, seconds: float, show: Callable[[JobRow, Storage], Shown]
) -> Shown | None:
    """The job once it is final, read as the stream reads it, or None after `seconds` (`Prefer: wait`)."""
    read = _reader(db_url, storage, key_id, job_id, show)
    deadline = time.monotonic() + seconds
    while True:
        job = await anyio.to_thread.run_sync(read)
        if job is None or job.state.final:
            return job
        if time.monotonic() + POLL_S > deadline:
            return None
        await anyio.sleep(POLL_S)


async def stream(
    db_url: str,
    storage: Storage,
    key_id: str,
    job_id: str,
    show: Callable[[JobRow, Storage], Shown] = jobs.to_schema,
    missing: ErrorCode = ErrorCode.EDIT_NOT_FOUND,
) -> AsyncIterator[bytes]:
    """The events of one job the caller owns (the route checked that before answering 200), each shown
    by `show` (`jobs.to_schema` for edits, `jobs.to_preview` for previews)."""
    read = _reader(db_url, storage, key_id, job_id, show)
    seen: tuple[str, str | None, float] | None = None
    count, quiet_since = 0, time.monotonic()
    while True:
        job = await anyio.to_thread.run_sync(read)
        if job is None:
            count += 1
            problem = {"code": missing.value, "detail": f"{job_id} was deleted"}
            yield frame("error", json.dumps(problem), count)
            return
        now = (job.state.value, job.stage, job.progress)
        if now != seen:
            count += 1
            kind = "result" if job.state.final else "state" if seen is None or seen[0] != now[0] else "progress"
            yield frame(kind, job.model_dump_json(), count)
            seen, quiet_since = now, time.monotonic()
            if job.state.final:
                return
        elif time.monotonic() - quiet_since >= KEEPALIVE_S:
            yield b": keep-alive\n\n"
            quiet_since = time.monotonic()
        await anyio.sleep(POLL_S)
