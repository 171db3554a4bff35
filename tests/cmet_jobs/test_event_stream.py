"""`cmet_jobs.events.stream` on a real (SQLite) record: what a client sees as the worker moves the job, what
open streams cost the database, the cap per key and a revoked key."""

from __future__ import annotations

import json
import time
from pathlib import Path

import anyio
import pytest

from cmet_jobs import events
from cmet_jobs.db.models import JobRow
from cmet_jobs.db.session import migrate, session_scope
from cmet_jobs.slots import LocalSlots
from cmet_jobs.states import JobState
from cmet_jobs.storage import LocalStorage
from tests.records import make_job, new_key


@pytest.fixture
def db(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'jobs.db'}"
    migrate(url)
    return url


def _set(url: str, job_id: str, **fields: object) -> None:
    with session_scope(url) as session:
        job = session.get(JobRow, job_id)
        assert job is not None
        for name, value in fields.items():
            setattr(job, name, value)


def _parse(chunk: bytes) -> tuple[str, dict]:  # type: ignore[type-arg]
    lines = dict(line.split(": ", 1) for line in chunk.decode().strip().splitlines())
    return lines["event"], json.loads(lines["data"])


def _follow(url: str, storage: LocalStorage, key_id: str, job_id: str, steps: list[dict]) -> list[tuple[str, dict]]:  # type: ignore[type-arg]
    """Each event received, after which the next of `steps` is written to the record (as a worker would)."""
    seen: list[tuple[str, dict]] = []  # type: ignore[type-arg]

    async def run() -> None:
        notifier = events.Notifier(url, LocalSlots(5))
        async for chunk in events.stream(notifier, storage, notifier.watch(key_id, job_id)):
            seen.append(_parse(chunk))
            if len(seen) <= len(steps):
                _set(url, job_id, **steps[len(seen) - 1])

    anyio.run(run)
    return seen


def test_a_stream_tells_each_change_once_and_ends_with_the_final_state(db: str, tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path / "store", "http://cmet.test", b"secret", 60)
    key_id = new_key(db)
    job_id = make_job(db, key_id, state=JobState.QUEUED)
    steps = [
        {"state": JobState.RUNNING, "stage": "faces", "progress": 0.1},
        {"stage": "render", "progress": 0.6},
        {"state": JobState.FAILED, "stage": None, "error_code": "no_face", "error_message": "no face"},
    ]
    seen = _follow(db, storage, key_id, job_id, steps)
    assert [name for name, _ in seen] == ["state", "state", "progress", "result"]
    assert [(d["state"], d["stage"], d["progress"]) for _, d in seen] == [
        ("queued", None, 0.0),
        ("running", "faces", 0.1),
        ("running", "render", 0.6),
        ("failed", None, 0.6),
    ]
    assert seen[-1][1]["error"] == {"code": "no_face", "message": "no face"}


def test_a_job_deleted_or_of_another_key_ends_the_stream_with_an_error(db: str, tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path / "store", "http://cmet.test", b"secret", 60)
    key_id = new_key(db)
    job_id = make_job(db, key_id, state=JobState.RUNNING)

    async def first_then_delete() -> list[tuple[str, dict]]:  # type: ignore[type-arg]
        seen = []
        notifier = events.Notifier(db, LocalSlots(5))
        async for chunk in events.stream(notifier, storage, notifier.watch(key_id, job_id)):
            seen.append(_parse(chunk))
            if len(seen) == 1:
                with session_scope(db) as session:
                    session.delete(session.get(JobRow, job_id))
        return seen

    seen = anyio.run(first_then_delete)
    assert [name for name, _ in seen] == ["state", "error"] and seen[1][1]["code"] == "edit_not_found"

    other = make_job(db, new_key(db), state=JobState.QUEUED)

    async def foreign() -> list[bytes]:
        notifier = events.Notifier(db, LocalSlots(5))
        return [chunk async for chunk in events.stream(notifier, storage, notifier.watch(key_id, other))]

    assert [_parse(c)[0] for c in anyio.run(foreign)] == ["error"]


def _statements(url: str) -> list[int]:
    """A counter of the SQL statements run on the engine of `url` (the one every session of it uses)."""
    from sqlalchemy import event

    from cmet_jobs.db.session import engine_for

    count = [0]

    def counted(*_: object) -> None:
        count[0] += 1

    event.listen(engine_for(url), "before_cursor_execute", counted)
    return count


def test_open_streams_cost_one_query_per_poll_whatever_their_number(db: str, tmp_path: Path) -> None:
    """Twenty streams on a job that does not change for 2 s: the process polls once per POLL_S for all of
    them (a poll per stream would be 20 x 4 = 80 statements), and each stream read its record once."""
    storage = LocalStorage(tmp_path / "store", "http://cmet.test", b"secret", 60)
    key_id = new_key(db)
    job_id = make_job(db, key_id, state=JobState.QUEUED)
    streams, quiet_s = 20, 2.0
    count = _statements(db)
    firsts: list[str] = []

    async def run() -> int:
        slots = LocalSlots(streams)
        notifier = events.Notifier(db, slots)

        async def follow() -> None:
            async for chunk in events.stream(notifier, storage, notifier.watch(key_id, job_id)):
                firsts.append(_parse(chunk)[0])

        async with anyio.create_task_group() as group:
            for _ in range(streams):
                group.start_soon(follow)
            await anyio.sleep(0.3)
            before = count[0]
            await anyio.sleep(quiet_s)
            during = count[0] - before
            group.cancel_scope.cancel()
        assert not notifier.watches and not slots.held  # every stream gave its watch back
        return during

    during = anyio.run(run)
    print(f"\n{streams} quiet streams for {quiet_s:g} s: {during} SQL statements")
    assert firsts == ["state"] * streams
    assert during <= quiet_s / events.POLL_S + 2, during


def test_a_key_holds_at_most_its_streams_and_a_revoked_key_loses_them(db: str, tmp_path: Path) -> None:
    from cmet_core.errors import ErrorCode
    from cmet_jobs.errors import RequestError
    from cmet_jobs.keys import revoke_key

    storage = LocalStorage(tmp_path / "store", "http://cmet.test", b"secret", 60)
    key_id, other_key = new_key(db), new_key(db)
    job_id, other_job = make_job(db, key_id, state=JobState.QUEUED), make_job(db, other_key, state=JobState.QUEUED)
    notifier = events.Notifier(db, LocalSlots(2))
    watches = [notifier.watch(key_id, job_id) for _ in range(2)]
    with pytest.raises(RequestError) as refused:
        notifier.watch(key_id, job_id)
    assert refused.value.code == ErrorCode.STREAM_LIMIT and refused.value.headers["Retry-After"] == "10"
    notifier.watch(other_key, other_job).close()  # another key is not counted with it
    watches[1].close()
    watches[1] = notifier.watch(key_id, job_id)  # a closed stream frees its place

    async def follow_then_revoke() -> tuple[list[str], float]:
        seen: list[str] = []
        started = 0.0
        async for chunk in events.stream(notifier, storage, watches[0]):
            seen.append(_parse(chunk)[0])
            if len(seen) == 1:
                with session_scope(db) as session:
                    assert revoke_key(session, key_id)
                started = time.monotonic()
        return seen, time.monotonic() - started

    seen, took = anyio.run(follow_then_revoke)
    assert seen == ["state", "error"] and took < 2 * events.POLL_S + 0.5, (seen, took)
