"""`cmet_jobs.events.stream` on a real (SQLite) record: what a client sees as the worker moves the job."""

from __future__ import annotations

import json
from pathlib import Path

import anyio
import pytest

from cmet_jobs import events
from cmet_jobs.db.models import JobRow
from cmet_jobs.db.session import migrate, session_scope
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
        async for chunk in events.stream(url, storage, key_id, job_id):
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
        async for chunk in events.stream(db, storage, key_id, job_id):
            seen.append(_parse(chunk))
            if len(seen) == 1:
                with session_scope(db) as session:
                    session.delete(session.get(JobRow, job_id))
        return seen

    seen = anyio.run(first_then_delete)
    assert [name for name, _ in seen] == ["state", "error"] and seen[1][1]["code"] == "edit_not_found"

    other = make_job(db, new_key(db), state=JobState.QUEUED)

    async def foreign() -> list[bytes]:
        return [chunk async for chunk in events.stream(db, storage, key_id, other)]

    assert [_parse(c)[0] for c in anyio.run(foreign)] == ["error"]
