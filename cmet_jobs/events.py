"""A job's progress as server-sent events (`GET /v1/edits/{id}/events`, `GET /v1/previews/{id}/events`),
without HTTP.

One `Notifier` per API process watches every followed job with one query per `POLL_S` (the
state, stage and progress of all of them, and whether their key was revoked), whatever the
number of open streams: a stream costs no database work while its job does not change, and
reads its record only when the notifier saw a change. The query runs on a worker thread in a
session opened and closed for it, so open streams hold no database connection and no thread.
The record is the truth (decision 0001): the worker already writes state, stage and progress
there, and `cmet serve` has no Redis for a pub/sub channel, so one poll per process works the
same on every deployment.

A key may hold `event_streams_per_key` streams open in one process (`Notifier.watch` refuses
more with 429 `stream_limit`), so one key's thousand streams cannot slow everyone's reads.

Events, each with the job as JSON in `data` (`schemas.Job` for an edit, `schemas.Preview` for a preview):
- `state`: the first event, then whenever the state changes;
- `progress`: the stage or progress changed;
- `result`: the job reached a final state (with `output_url` on success); the stream ends;
- `error`: the job was deleted meanwhile (`edit_not_found`, `preview_not_found` for a preview) or its
  key revoked (`unauthorized`), as a problem body; the stream ends.
A comment line every `KEEPALIVE_S` keeps proxies from closing a quiet stream.

The stream samples the record, so it tells states that last at least one poll: a job that starts and
ends between two reads goes from `state` (queued) straight to `result`, whose `started_at` says it ran.
A client that needs every step reads the webhooks (`edit.running` is recorded when the worker starts).
"""

from __future__ import annotations

import json
import time
import weakref
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass, field
from enum import StrEnum

import anyio
from sqlalchemy import select
from sqlalchemy.orm import Session

from cmet_core.errors import ErrorCode
from cmet_jobs import batches, jobs, schemas
from cmet_jobs.db.models import ApiKey, BatchRow, JobRow
from cmet_jobs.db.session import new_session
from cmet_jobs.errors import RequestError
from cmet_jobs.states import JobState
from cmet_jobs.storage import Storage

POLL_S = 0.5
KEEPALIVE_S = 15.0
MEDIA_TYPE = "text/event-stream"
HEADERS = {"Cache-Control": "no-store", "X-Accel-Buffering": "no"}
"""A stream's response headers: never cached, never buffered by nginx."""
STREAM_RETRY_AFTER_S = 10
"""When a stream frees is unknown (its job ends, its client leaves): a short, fixed wait."""
READ_CHUNK = 500
"""Job ids per query of the notifier's poll."""

Seen = tuple[str, str | None, float]
"""What a stream has told its client: state, stage, progress."""
Shown = schemas.Job | schemas.Preview
Show = Callable[[JobRow, Storage], Shown]
"""How a stream shows its job: `jobs.to_schema` (edits), `jobs.to_preview` (previews)."""


class Ending(StrEnum):
    GONE = "gone"
    REVOKED = "revoked"


def frame(event: str, data: str, event_id: int | None = None) -> bytes:
    """One SSE message; `data` is JSON, so it holds no newline."""
    head = f"id: {event_id}\n" if event_id is not None else ""
    return f"{head}event: {event}\ndata: {data}\n\n".encode()


@dataclass(eq=False)
class Watch:
    """One open stream's interest in one job: what it told last, and what the notifier saw since."""

    key_id: str
    job_id: str
    notifier: Notifier
    seen: Seen | None = None
    news: Seen | Ending | None = None
    closed: bool = False
    counted: bool = True
    """Whether it counts against the key's open streams (a batch's stream counts once for all its jobs)."""

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.notifier.forget(self)


@dataclass
class Notifier:
    """Every followed job of this process, polled together; see the module's docstring."""

    db_url: str
    per_key: int
    watches: dict[str, set[Watch]] = field(default_factory=dict)
    open_per_key: Counter[str] = field(default_factory=Counter)
    rounds: int = 0
    _lock: anyio.Lock = field(default_factory=anyio.Lock)
    _last_poll: float = 0.0

    def watch(self, key_id: str, job_id: str) -> Watch:
        """A new stream's watch, or 429 `stream_limit` when the key has its maximum open here."""
        return self.watch_all(key_id, [job_id])[0]

    def watch_all(self, key_id: str, job_ids: list[str]) -> list[Watch]:
        """One stream's watches of several jobs (a batch's), counted as one stream."""
        if self.open_per_key[key_id] >= self.per_key:
            raise RequestError(
                ErrorCode.STREAM_LIMIT,
                f"this key has {self.per_key} event streams open; close one or poll the job",
                {"Retry-After": str(STREAM_RETRY_AFTER_S)},
            )
        made = [Watch(key_id, job_id, self, counted=i == 0) for i, job_id in enumerate(job_ids)]
        self.open_per_key[key_id] += 1
        for watch in made:
            self.watches.setdefault(watch.job_id, set()).add(watch)
        return made

    def forget(self, watch: Watch) -> None:
        if watch.counted:
            self.open_per_key[watch.key_id] -= 1
            if self.open_per_key[watch.key_id] <= 0:
                del self.open_per_key[watch.key_id]
        followers = self.watches.get(watch.job_id, set())
        followers.discard(watch)
        if not followers:
            self.watches.pop(watch.job_id, None)

    async def changed(self, watch: Watch, timeout: float) -> Seen | Ending | None:
        """What changed for `watch` (None: nothing within `timeout`)."""
        found = await self.changed_any([watch], timeout)
        return found[0][1] if found else None

    async def changed_any(self, watches: Iterable[Watch], timeout: float) -> list[tuple[Watch, Seen | Ending]]:
        """What changed for any of `watches` (empty: nothing within `timeout`). The stream that finds no
        poll under way runs the next one for every watch; the others wait for it."""
        followed = list(watches)
        with anyio.move_on_after(timeout):
            while all(watch.news is None for watch in followed):
                await self._next_round()
        found = [(watch, watch.news) for watch in followed if watch.news is not None]
        for watch, _ in found:
            watch.news = None
        return found

    async def _next_round(self) -> None:
        round_seen = self.rounds
        async with self._lock:
            if self.rounds != round_seen:
                return  # another stream polled while this one waited
            await anyio.sleep(max(0.0, self._last_poll + POLL_S - time.monotonic()))
            rows = await anyio.to_thread.run_sync(self._read, list(self.watches))
            self._last_poll = time.monotonic()
            self.rounds += 1
        for job_id, followers in list(self.watches.items()):
            for watch in followers:
                now = _news(rows.get(job_id), watch)
                if now is not None and now != watch.seen:
                    watch.news = now

    def _read(self, job_ids: list[str]) -> dict[str, tuple[str, Seen, bool]]:
        """(key id, what a client would see, whether the key is revoked) of each job that exists."""
        found: dict[str, tuple[str, Seen, bool]] = {}
        session = new_session(self.db_url)
        try:
            for start in range(0, len(job_ids), READ_CHUNK):
                query = (
                    select(JobRow.id, JobRow.key_id, JobRow.state, JobRow.stage, JobRow.progress, ApiKey.revoked_at)
                    .join(ApiKey, ApiKey.id == JobRow.key_id)
                    .where(JobRow.id.in_(job_ids[start : start + READ_CHUNK]))
                )
                for job_id, key_id, state, stage, progress, revoked_at in session.execute(query):
                    found[job_id] = (key_id, (state.value, stage, progress), revoked_at is not None)
        finally:
            session.close()
        return found


def _news(row: tuple[str, Seen, bool] | None, watch: Watch) -> Seen | Ending | None:
    if row is None or row[0] != watch.key_id:
        return Ending.GONE
    return Ending.REVOKED if row[2] else row[1]


def _read_job(db_url: str, storage: Storage, watch: Watch, show: Show) -> tuple[Shown, Seen] | Ending:
    """The job as the client sees it, and what that shows, read whole (an output URL is signed anew)."""
    return _read_jobs(db_url, storage, [watch], show)[0]


def _read_jobs(db_url: str, storage: Storage, watches: list[Watch], show: Show) -> list[tuple[Shown, Seen] | Ending]:
    """`_read_job` of each watch, in one session."""
    session = new_session(db_url)
    try:
        return [_shown(session, storage, watch, show) for watch in watches]
    finally:
        session.close()


def _shown(session: Session, storage: Storage, watch: Watch, show: Show) -> tuple[Shown, Seen] | Ending:
    job = session.get(JobRow, watch.job_id)
    if job is None or job.key_id != watch.key_id:
        return Ending.GONE
    key = session.get(ApiKey, job.key_id)
    if key is None or key.revoked_at is not None:
        return Ending.REVOKED
    return show(job, storage), (job.state.value, job.stage, job.progress)


def _problem(ending: Ending, job_id: str, missing: ErrorCode) -> str:
    if ending is Ending.GONE:
        return json.dumps({"code": missing.value, "detail": f"{job_id} was deleted"})
    return json.dumps({"code": ErrorCode.UNAUTHORIZED.value, "detail": "the API key was revoked"})


def stream(
    notifier: Notifier,
    storage: Storage,
    watch: Watch,
    show: Show = jobs.to_schema,
    missing: ErrorCode = ErrorCode.EDIT_NOT_FOUND,
) -> AsyncIterator[bytes]:
    """The events of one job the caller owns (the route checked that before answering 200), each shown
    by `show`, a deleted one ending with `missing`. The watch is closed when the stream ends, and when
    its body is dropped without being read (a HEAD)."""
    body = _events(notifier, storage, watch, show, missing)
    weakref.finalize(body, watch.close)
    return body


async def _events(
    notifier: Notifier, storage: Storage, watch: Watch, show: Show, missing: ErrorCode
) -> AsyncIterator[bytes]:
    count, quiet_since = 0, time.monotonic()
    try:
        read = await anyio.to_thread.run_sync(_read_job, notifier.db_url, storage, watch, show)
        while True:
            if isinstance(read, Ending):
                yield frame("error", _problem(read, watch.job_id, missing), count + 1)
                return
            job, now = read
            if now != watch.seen:
                count += 1
                yield _told(watch, job, now, count)
                quiet_since = time.monotonic()
                if job.state.final:
                    return
            news = await notifier.changed(watch, max(0.0, quiet_since + KEEPALIVE_S - time.monotonic()))
            if news is None:
                yield b": keep-alive\n\n"
                quiet_since = time.monotonic()
                continue
            read = (
                news
                if isinstance(news, Ending)
                else await anyio.to_thread.run_sync(_read_job, notifier.db_url, storage, watch, show)
            )
    finally:
        watch.close()


def _told(watch: Watch, job: Shown, now: Seen, event_id: int) -> bytes:
    """The event that tells `now` to a client that was told `watch.seen` (`state`, `progress` or `result`),
    which the watch then remembers as told."""
    moved = watch.seen is None or watch.seen[0] != now[0]
    kind = "result" if job.state.final else "state" if moved else "progress"
    watch.seen = now
    return frame(kind, job.model_dump_json(), event_id)


def batch_stream(notifier: Notifier, storage: Storage, watches: list[Watch], batch_id: str) -> AsyncIterator[bytes]:
    """The events of a batch's edits (`state`, `progress`, `result` as an edit's stream sends them, each
    with its edit), then `batch` with the batch once every edit ended; `error` when the key is revoked.
    One stream of the key's `event_streams_per_key`, however many edits it follows."""
    body = _batch_events(notifier, storage, watches, batch_id)
    weakref.finalize(body, _close_all, watches)
    return body


async def _batch_events(
    notifier: Notifier, storage: Storage, watches: list[Watch], batch_id: str
) -> AsyncIterator[bytes]:
    count, quiet_since, following = 0, time.monotonic(), list(watches)
    try:
        reads = await anyio.to_thread.run_sync(_read_jobs, notifier.db_url, storage, following, jobs.to_schema)
        while True:
            for watch, read in zip(following, reads, strict=True):
                if read is Ending.REVOKED:
                    yield frame("error", _problem(read, batch_id, ErrorCode.BATCH_NOT_FOUND), count + 1)
                    return
                if isinstance(read, Ending):  # deleted: only an edit that ended can be
                    watch.seen = ("deleted", None, 1.0)
                    continue
                job, now = read
                if now != watch.seen:
                    count += 1
                    yield _told(watch, job, now, count)
                    quiet_since = time.monotonic()
            following = [w for w in watches if w.seen is None or w.seen[0] not in FINAL_STATES]
            if not following:
                batch = await anyio.to_thread.run_sync(_read_batch, notifier.db_url, watches[0].key_id, batch_id)
                yield frame("batch", batch, count + 1)
                return
            changed = await notifier.changed_any(following, max(0.0, quiet_since + KEEPALIVE_S - time.monotonic()))
            if not changed:
                yield b": keep-alive\n\n"
                quiet_since = time.monotonic()
            following = [watch for watch, _ in changed]
            reads = await anyio.to_thread.run_sync(_read_jobs, notifier.db_url, storage, following, jobs.to_schema)
    finally:
        _close_all(watches)


def _close_all(watches: list[Watch]) -> None:
    for watch in watches:
        watch.close()


FINAL_STATES = frozenset(state.value for state in JobState if state.final) | {"deleted"}


def _read_batch(db_url: str, key_id: str, batch_id: str) -> str:
    """The batch as JSON, as `GET /v1/batches/{id}` shows it."""
    session = new_session(db_url)
    try:
        batch = session.get(BatchRow, batch_id)
        assert batch is not None and batch.key_id == key_id, batch_id  # a batch outlives its edits' streams
        return batches.to_schema(session, batch).model_dump_json()
    finally:
        session.close()


def _final(db_url: str, storage: Storage, key_id: str, job_id: str, show: Show) -> Shown | None:
    """The job as the client sees it once it is final, else None (one read in a session of its own)."""
    session = new_session(db_url)
    try:
        job = session.get(JobRow, job_id)
        return show(job, storage) if job is not None and job.key_id == key_id and job.state.final else None
    finally:
        session.close()


async def final_within(
    db_url: str, storage: Storage, key_id: str, job_id: str, seconds: float, show: Show
) -> Shown | None:
    """The job once it is final, read every `POLL_S` as a stream reads it, or None after `seconds`
    (`Prefer: wait`); no connection is held between reads."""
    deadline = time.monotonic() + seconds
    while (final := await anyio.to_thread.run_sync(_final, db_url, storage, key_id, job_id, show)) is None:
        if time.monotonic() + POLL_S > deadline:
            return None
        await anyio.sleep(POLL_S)
    return final
