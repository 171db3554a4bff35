"""What a cluster scales the GPU workers on: the queues' depth and the oldest waiting job's age on the API's
/metrics, read off real Redis; the API ready without workers where they scale to zero; and the standalone
sweeper (`cmet worker --sweeper`) re-queueing a job whose message was lost while no edit worker runs."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
import redis
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import func, select

from cmet_jobs import queue
from cmet_jobs.db.models import WorkerBeat, now
from cmet_jobs.db.session import migrate, session_scope
from cmet_jobs.settings import JobsSettings
from cmet_jobs.states import JobKind, JobState
from service.app import create_app
from tests.records import make_job
from tests.service.stack import REDIS_URL

pytestmark = pytest.mark.stack("Redis")  # the broker; the database is SQLite

TOKEN = "metrics-token-for-the-test"


@pytest.fixture
def settings(tmp_path: Path) -> Iterator[JobsSettings]:
    """Queues of this test's own (the machine's Redis is shared), emptied afterwards."""
    run = uuid.uuid4().hex[:8]
    made = JobsSettings(
        data_dir=tmp_path,
        broker_url=REDIS_URL,
        queue=f"t-edits-{run}",
        preview_queue=f"t-previews-{run}",
        webhook_queue=f"t-webhooks-{run}",
        metrics_token=TOKEN,
    )
    yield made
    redis.Redis.from_url(REDIS_URL).delete(made.queue, made.preview_queue)


def _samples(text: str) -> dict[tuple[str, str], float]:
    return {
        (s.name, s.labels.get("queue", "")): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name.startswith("cmet_queue_")
    }


def test_metrics_show_each_queue_depth_and_its_oldest_job_age(settings: JobsSettings) -> None:
    queue.submit(settings, "job-1")
    time.sleep(0.5)
    queue.submit(settings, "job-2")
    queue.submit(settings, "preview-1", kind=JobKind.CLIP)
    # a message an older API queued, without the header: counted, its age unknown
    redis.Redis.from_url(REDIS_URL).lpush(settings.queue, json.dumps({"headers": {}, "body": ""}))

    with TestClient(create_app(settings)) as client:
        page = client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    read_at = time.monotonic()
    assert page.status_code == 200
    got = _samples(page.text)
    assert got[("cmet_queue_waiting", settings.queue)] == 3
    assert got[("cmet_queue_waiting", settings.preview_queue)] == 1
    # the oldest edit is job-1, queued half a second before the preview (the app's start comes between)
    oldest_edit = got[("cmet_queue_oldest_waiting_seconds", settings.queue)]
    assert 0.5 <= oldest_edit < 60
    assert got[("cmet_queue_oldest_waiting_seconds", settings.preview_queue)] <= oldest_edit - 0.45
    assert queue.waiting_messages(settings) == 4

    # a worker takes the oldest (Redis hands out from the right): the next one is younger, by half a second
    # at the same moment (every message has aged by the time since the page was read)
    redis.Redis.from_url(REDIS_URL).rpop(settings.queue)
    edits = next(w for w in queue.waiting(settings) if w.queue == settings.queue)
    since = time.monotonic() - read_at
    assert edits.messages == 2 and edits.oldest_age_s is not None
    assert edits.oldest_age_s <= oldest_edit - 0.45 + since


def test_an_unreadable_broker_leaves_the_queue_metrics_out_not_the_page(settings: JobsSettings) -> None:
    from service.metrics import page  # the page without the app: the broker is the only thing changed

    migrate(settings.db_url)
    away = settings.model_copy(update={"broker_url": "redis://127.0.0.1:9/0"})  # nothing listens on port 9
    started = time.monotonic()
    text = page(away).body.decode()
    assert 'cmet_jobs{state="queued"}' in text and "cmet_queue_waiting" not in text
    assert time.monotonic() - started < 20


@pytest.mark.parametrize("needs_workers", [True, False])
def test_readiness_asks_for_workers_only_where_they_cannot_scale_to_zero(
    settings: JobsSettings, needs_workers: bool
) -> None:
    with TestClient(create_app(settings.model_copy(update={"ready_needs_workers": needs_workers}))) as client:
        ready = client.get("/readyz")
    checks = ready.json()["checks"]
    assert {k: checks[k] for k in ("database", "broker", "storage")} == {
        "database": "ok",
        "broker": "ok",
        "storage": "ok",
    }
    if needs_workers:  # no worker runs here
        assert ready.status_code == 503 and "no worker seen" in checks["workers"]
    else:
        assert ready.status_code == 200 and "workers" not in checks


def test_the_standalone_sweeper_requeues_a_lost_job_and_beats_for_no_worker(
    settings: JobsSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What `cmet worker --sweeper` runs (in this process: the command's start costs seconds of imports here)."""
    from worker import sweeper  # the worker package only for this test

    migrate(settings.db_url)
    lost = make_job(settings.db_url, state=JobState.QUEUED, updated_at=now() - timedelta(minutes=5))
    monkeypatch.setattr(sweeper, "get_jobs_settings", lambda: settings)
    stop = sweeper.start(edits=False, webhooks=False, records=True)
    try:
        deadline = time.monotonic() + 20
        while queue.waiting_messages(settings) == 0:
            assert time.monotonic() < deadline, "the sweeper re-queued nothing"
            time.sleep(0.2)
    finally:
        stop.set()
    message = json.loads(redis.Redis.from_url(REDIS_URL).lindex(settings.queue, -1) or b"{}")
    assert message["headers"]["argsrepr"] == repr([lost])
    with session_scope(settings.db_url) as session:  # no edit worker beat: readiness is not fooled
        assert session.scalar(select(func.count()).select_from(WorkerBeat)) == 0
