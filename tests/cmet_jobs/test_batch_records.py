"""A batch's records without HTTP: it completes once, when its last edit ends (recording `batch.completed`),
one whose API process died while creating it goes with its jobs, and its event stream counts once."""

from __future__ import annotations

import json
from pathlib import Path

import anyio
import pytest

from cmet_core.errors import ErrorCode
from cmet_jobs import batches, events, jobs
from cmet_jobs.db.models import BatchRow, JobRow, WebhookDelivery, new_id
from cmet_jobs.db.session import migrate, session_scope
from cmet_jobs.errors import RequestError
from cmet_jobs.settings import JobsSettings
from cmet_jobs.states import BatchState, JobState
from cmet_jobs.storage import LocalStorage
from tests.records import make_job, new_key
from worker.sweeper import remove_abandoned_creations


@pytest.fixture
def db(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'jobs.db'}"
    migrate(url)
    return url


def _batch(db: str, key_id: str, state: JobState, edits: int = 2) -> tuple[str, list[str]]:
    with session_scope(db) as session:
        batch = BatchRow(
            id=new_id("bat"),
            key_id=key_id,
            webhook_url="https://example.com/hook",
            webhook_events={"events": ["batch.completed"]},
        )
        session.add(batch)
    ids = [make_job(db, key_id, state=state, batch_id=batch.id) for _ in range(edits)]
    with session_scope(db) as session:
        session.get(BatchRow, batch.id).edit_ids = {"ids": ids}  # type: ignore[union-attr]
    return batch.id, ids


def _end(db: str, job_id: str, state: JobState) -> str | None:
    with session_scope(db) as session:
        job = session.get(JobRow, job_id)
        assert job is not None
        jobs.finish(job, state, ErrorCode.INTERNAL if state == JobState.FAILED else None, "x")
        return batches.job_ended(session, job)


def test_a_batch_completes_once_when_its_last_edit_ends(db: str) -> None:
    batch_id, (first, second) = _batch(db, new_key(db), JobState.RUNNING)
    assert _end(db, first, JobState.SUCCEEDED) is None, "one edit still runs"
    delivery_id = _end(db, second, JobState.FAILED)
    assert delivery_id is not None
    with session_scope(db) as session:
        again = batches.job_ended(session, session.get(JobRow, second))  # type: ignore[arg-type]
        shown = batches.to_schema(session, session.get(BatchRow, batch_id))  # type: ignore[arg-type]
        delivery = session.get(WebhookDelivery, delivery_id)
        assert delivery is not None and (delivery.batch_id, delivery.job_id) == (batch_id, None)
        assert delivery.payload["data"]["counts"]["failed"] == 1 and delivery.event == "batch.completed"
    assert again is None, "recorded once"
    assert (shown.state, shown.total, shown.counts.succeeded, shown.counts.failed) == (BatchState.COMPLETED, 2, 1, 1)


def test_a_half_created_batch_goes_with_its_jobs(db: str, tmp_path: Path) -> None:
    key_id = new_key(db)
    half, _ = _batch(db, key_id, JobState.CREATING)
    whole, _ = _batch(db, key_id, JobState.QUEUED)
    settings = JobsSettings(data_dir=tmp_path, database_url=db, creating_timeout_s=1e-6)
    assert len(remove_abandoned_creations(settings)) == 2
    with session_scope(db) as session:
        assert session.get(BatchRow, half) is None and session.get(BatchRow, whole) is not None


def test_a_batch_stream_is_one_of_the_keys_streams_and_ends_with_the_batch(db: str, tmp_path: Path) -> None:
    key_id = new_key(db)
    batch_id, ids = _batch(db, key_id, JobState.RUNNING, edits=3)
    for job_id in ids:
        _end(db, job_id, JobState.SUCCEEDED)
    notifier = events.Notifier(db, per_key=2)
    watches = notifier.watch_all(key_id, ids)
    single = notifier.watch(key_id, ids[0])  # three edits followed, one stream counted: room for one more
    with pytest.raises(RequestError) as refused:
        notifier.watch(key_id, ids[0])
    assert refused.value.code == ErrorCode.STREAM_LIMIT
    single.close()
    storage = LocalStorage(tmp_path / "store", "http://cmet.test", b"secret", 60)

    async def follow() -> list[tuple[str, str]]:
        seen = []
        async for chunk in events.batch_stream(notifier, storage, watches, batch_id):
            lines = dict(line.split(": ", 1) for line in chunk.decode().strip().splitlines())
            seen.append((lines["event"], json.loads(lines["data"])["id"]))
        return seen

    seen = anyio.run(follow)
    assert seen == [("result", i) for i in ids] + [("batch", batch_id)]
    assert notifier.open_per_key[key_id] == 0 and not notifier.watches, "the stream's end frees its place"
