"""How a running edit ends: one table maps what it raised to a final state and code, and a job
whose stored spec no worker can read is failed once instead of being re-queued forever."""

from __future__ import annotations

from pathlib import Path

import pytest
from celery.exceptions import SoftTimeLimitExceeded
from sqlalchemy import select

from cmet_core.errors import ErrorCode, InputError
from cmet_core.networks.errors import ModelLoadError
from cmet_jobs.db.models import JobRow, WebhookDelivery
from cmet_jobs.db.session import migrate, session_scope
from cmet_jobs.settings import JobsSettings
from cmet_jobs.states import JobState
from cmet_jobs.storage import StorageError, storage_for
from tests.records import SPEC, make_job
from worker.guards import JobCanceled, JobTimedOut
from worker.tasks import _claim, ending_for


@pytest.mark.parametrize(
    ("exc", "state", "code", "drop"),
    [
        (JobCanceled(), JobState.CANCELED, None, True),
        (JobTimedOut("past 5 s"), JobState.FAILED, ErrorCode.TIMEOUT, True),
        (SoftTimeLimitExceeded(), JobState.FAILED, ErrorCode.TIMEOUT, True),
        (InputError(ErrorCode.NO_FACE, "no face"), JobState.FAILED, ErrorCode.NO_FACE, False),
        (StorageError("bucket gone"), JobState.FAILED, ErrorCode.STORAGE, False),
        (ModelLoadError("no set"), JobState.FAILED, ErrorCode.MODELS_UNAVAILABLE, False),
        (RuntimeError("bug"), JobState.FAILED, ErrorCode.INTERNAL, False),
    ],
)
def test_each_exception_ends_the_job_one_way(
    exc: Exception, state: JobState, code: ErrorCode | None, drop: bool
) -> None:
    ending = ending_for(exc, soft_s=30.0)
    assert (ending.state, ending.code, ending.drop_output) == (state, code, drop)
    assert ending.state.final


def test_a_soft_limit_without_a_message_names_the_limit() -> None:
    assert ending_for(SoftTimeLimitExceeded(), soft_s=30.0).message == "the edit ran past its time limit of 30 s"


def test_a_job_whose_spec_cannot_be_read_fails_once(tmp_path: Path) -> None:
    settings = JobsSettings(data_dir=tmp_path)
    migrate(settings.db_url)
    job_id = make_job(
        settings.db_url, spec={"video": {"key": "k"}, "emotion": "happy", "from_a_newer_api": 1}, state=JobState.QUEUED
    )
    assert _claim(settings, storage_for(settings), job_id) == JobState.FAILED
    with session_scope(settings.db_url) as session:
        record = session.get(JobRow, job_id)
        assert record is not None and record.state == JobState.FAILED
        assert record.error_code == ErrorCode.INTERNAL and "spec cannot be read" in (record.error_message or "")
    assert _claim(settings, storage_for(settings), job_id) is None  # final: nothing runs again


def test_a_subscribed_job_whose_spec_not_even_the_api_can_show_fails_once(tmp_path: Path) -> None:
    """A spec with a field this version does not know is shown without it (the webhook goes out); one that
    cannot be read at all still ends the job instead of failing the claim forever."""
    settings = JobsSettings(data_dir=tmp_path)
    migrate(settings.db_url)
    hook = {"webhook_url": "https://example.com/hook", "webhook_events": {"events": ["edit.failed"]}}
    newer = make_job(settings.db_url, spec={**SPEC, "from_a_newer_api": 1}, state=JobState.QUEUED, **hook)
    broken = make_job(settings.db_url, spec={"emotion": "happy"}, state=JobState.QUEUED, **hook)
    for job_id in (newer, broken):
        assert _claim(settings, storage_for(settings), job_id) == JobState.FAILED
    with session_scope(settings.db_url) as session:
        sent = {d.job_id for d in session.scalars(select(WebhookDelivery))}
    assert sent == {newer}


def test_a_run_that_lost_its_job_records_nothing_and_stops(tmp_path: Path) -> None:
    """Attempt 1's worker was cut off from the database past its lease and attempt 2 took the job over on
    another host. When the first comes back, its progress stops it, its output is not stored and its end
    is not recorded: the job ends once, by the run that holds it."""
    from cmet_jobs.results import EditResult
    from worker.guards import JobLost, Progress
    from worker.tasks import _finish

    settings = JobsSettings(data_dir=tmp_path)
    migrate(settings.db_url)
    job_id = make_job(settings.db_url, state=JobState.RUNNING, attempts=2)
    result = EditResult(frames=5, fps=25.0, duration_s=0.2, width=64, height=64)
    stale = Progress(settings, storage_for(settings), job_id, limit_s=60, attempt=1)
    with pytest.raises(JobLost):
        stale("render", 1, 10)
    with pytest.raises(JobLost):
        stale.still_held()
    _finish(settings, job_id, JobState.SUCCEEDED, result=result, output_key="stale", attempt=1)
    with session_scope(settings.db_url) as session:
        record = session.get(JobRow, job_id)
        assert record is not None and (record.state, record.output_key) == (JobState.RUNNING, None)
    Progress(settings, storage_for(settings), job_id, limit_s=60, attempt=2).still_held()
    _finish(settings, job_id, JobState.SUCCEEDED, result=result, output_key="fresh", attempt=2)
    with session_scope(settings.db_url) as session:
        record = session.get(JobRow, job_id)
        assert record is not None and (record.state, record.output_key) == (JobState.SUCCEEDED, "fresh")
