"""The job state machine of `cmet_jobs.jobs` on a real (SQLite) record, without any server.

Every transition the API and the worker rely on (start, lease, cancel, retry, finish, reconcile)
is checked here in isolation, so a regression shows up without the PostgreSQL/Redis stack.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from pydantic import ValidationError
from sqlalchemy import select

from cmet_core.errors import ErrorCode
from cmet_jobs import jobs
from cmet_jobs.db.models import JobRow, WorkerBeat, now
from cmet_jobs.db.session import migrate, session_scope
from cmet_jobs.results import EditResult, SheetCell, SheetResult
from cmet_jobs.states import JobState
from cmet_jobs.storage import LocalStorage
from tests.records import SPEC, make_job, new_key

RESULT = {"frames": 25, "fps": 25.0, "duration_s": 1.0, "width": 64, "height": 64}


@pytest.fixture
def db(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'jobs.db'}"
    migrate(url)
    return url


def load(url: str, job_id: str, change: Callable[[JobRow], object] | None = None) -> JobRow:
    """The job's record, after `change` was applied to it in its own transaction."""
    with session_scope(url) as session:
        job = session.get(JobRow, job_id)
        assert job is not None
        if change is not None:
            change(job)
        return job


def ago(seconds: float) -> datetime:
    return now() - timedelta(seconds=seconds)


def test_start_queued_job_runs_with_a_lease(db: str) -> None:
    job_id = make_job(db, state=JobState.QUEUED)
    with session_scope(db) as session:
        assert jobs.start(session, job_id, max_attempts=3, lease_s=10) is not None
    job = load(db, job_id)
    assert (job.state, job.attempts, job.stage) == (JobState.RUNNING, 1, "starting")
    assert job.lease_until is not None and job.lease_until > now()
    assert job.started_at is not None


@pytest.mark.parametrize("state", [JobState.CREATING, JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELED])
def test_start_ignores_creating_and_final_jobs(db: str, state: JobState) -> None:
    job_id = make_job(db, state=state)
    with session_scope(db) as session:
        assert jobs.start(session, job_id, max_attempts=3, lease_s=10) is None
    job = load(db, job_id)
    assert (job.state, job.attempts) == (state, 0)


def test_start_of_a_missing_job_is_none(db: str) -> None:
    with session_scope(db) as session:
        assert jobs.start(session, "edt_missing", max_attempts=3, lease_s=10) is None


def test_start_running_job_with_fresh_lease_is_busy(db: str) -> None:
    job_id = make_job(db, state=JobState.RUNNING, attempts=1, lease_until=now() + timedelta(seconds=5))
    with pytest.raises(jobs.JobBusy) as busy, session_scope(db) as session:
        jobs.start(session, job_id, max_attempts=3, lease_s=10)
    assert 0 < busy.value.retry_in <= 6
    assert load(db, job_id).attempts == 1


def test_start_takes_over_a_lapsed_lease(db: str) -> None:
    started = ago(60)
    job_id = make_job(db, state=JobState.RUNNING, attempts=1, lease_until=ago(1), started_at=started)
    with session_scope(db) as session:
        assert jobs.start(session, job_id, max_attempts=3, lease_s=10) is not None
    job = load(db, job_id)
    assert (job.state, job.attempts) == (JobState.RUNNING, 2)
    assert job.lease_until is not None and job.lease_until > now()
    assert job.started_at == started


def test_start_past_max_attempts_fails_the_job(db: str) -> None:
    job_id = make_job(db, state=JobState.RUNNING, attempts=3, lease_until=ago(1))
    with session_scope(db) as session:
        returned = jobs.start(session, job_id, max_attempts=3, lease_s=10)
        assert returned is not None and returned.state == JobState.FAILED
    job = load(db, job_id)
    assert job.state == JobState.FAILED and job.finished_at is not None
    assert ErrorCode(job.error_code) is ErrorCode.TOO_MANY_ATTEMPTS


def test_start_with_cancel_requested_cancels(db: str) -> None:
    job_id = make_job(db, state=JobState.QUEUED, cancel_requested=True)
    with session_scope(db) as session:
        returned = jobs.start(session, job_id, max_attempts=3, lease_s=10)
        assert returned is not None and returned.state == JobState.CANCELED
    job = load(db, job_id)
    assert (job.state, job.attempts) == (JobState.CANCELED, 0)
    assert job.finished_at is not None


def test_renew_lease_extends_a_running_job(db: str) -> None:
    job_id = make_job(db, state=JobState.RUNNING, attempts=1, lease_until=now() + timedelta(seconds=1))
    with session_scope(db) as session:
        assert jobs.renew_lease(session, job_id, attempt=1, lease_s=100)
    lease = load(db, job_id).lease_until
    assert lease is not None and lease > now() + timedelta(seconds=90)


@pytest.mark.parametrize("state", [JobState.QUEUED, JobState.SUCCEEDED])
def test_renew_lease_leaves_other_states_alone(db: str, state: JobState) -> None:
    job_id = make_job(db, state=state, attempts=0)  # queued: handed back by its run (the attempt taken back)
    with session_scope(db) as session:
        assert not jobs.renew_lease(session, job_id, attempt=1, lease_s=10)
    job = load(db, job_id)
    assert (job.state, job.lease_until) == (state, None)


def test_a_run_takes_back_a_job_put_back_while_it_was_away(db: str) -> None:
    """The database was away for longer than the lease and a sweeper put the job back; no other worker has
    started it yet: the run that is still working on it keeps it, and the new message finds it leased."""
    job_id = make_job(db, state=JobState.RUNNING, attempts=1, lease_until=ago(1))
    with session_scope(db) as session:
        jobs.requeued(session, [job_id])
    with session_scope(db) as session:
        assert jobs.renew_lease(session, job_id, attempt=1, lease_s=10)
    job = load(db, job_id)
    assert (job.state, job.attempts) == (JobState.RUNNING, 1) and jobs.holds(job, 1)
    with pytest.raises(jobs.JobBusy), session_scope(db) as session:
        jobs.start(session, job_id, max_attempts=3, lease_s=10)


def test_a_run_that_lost_its_job_can_neither_renew_nor_hand_it_back(db: str) -> None:
    """A worker cut off from the database past its lease (not dead) comes back to a job another worker
    took over: its attempt no longer holds the job, so it cannot renew the new run's lease or put the job
    back in the queue under it."""
    job_id = make_job(db, state=JobState.RUNNING, attempts=1, lease_until=ago(1))
    with session_scope(db) as session:  # the sweeper of another worker, then that worker
        jobs.requeued(session, [job_id])
    with session_scope(db) as session:
        taken = jobs.start(session, job_id, max_attempts=3, lease_s=10)
        assert taken is not None and taken.attempts == 2
    lease = load(db, job_id).lease_until
    with session_scope(db) as session:
        assert not jobs.renew_lease(session, job_id, attempt=1, lease_s=100)
        assert not jobs.retry_later(session, job_id, attempt=1)
    job = load(db, job_id)
    assert (job.state, job.attempts, job.lease_until) == (JobState.RUNNING, 2, lease)
    assert jobs.holds(job, 2) and not jobs.holds(job, 1)


def test_finish_failed_sets_error_and_clears_stage(db: str) -> None:
    job_id = make_job(db, state=JobState.RUNNING, stage="rendering", progress=0.4)
    load(db, job_id, lambda job: jobs.finish(job, JobState.FAILED, ErrorCode.NO_FACE, "no face found"))
    job = load(db, job_id)
    assert (job.state, job.stage, job.error_message, job.progress) == (JobState.FAILED, None, "no face found", 0.4)
    assert job.error_code == ErrorCode.NO_FACE and job.finished_at is not None and job.result is None


def test_finish_succeeded_sets_progress_and_result(db: str) -> None:
    job_id = make_job(db, state=JobState.RUNNING, stage="encoding", progress=0.9)
    load(db, job_id, lambda job: jobs.finish(job, JobState.SUCCEEDED, result=EditResult(**RESULT)))
    job = load(db, job_id)
    assert (job.state, job.progress, job.result, job.stage) == (JobState.SUCCEEDED, 1.0, RESULT, None)
    assert job.error_code is None and job.finished_at is not None


@pytest.mark.parametrize("state", [JobState.QUEUED, JobState.RUNNING, JobState.CREATING])
def test_finish_refuses_a_non_final_state(state: JobState) -> None:
    job = JobRow(key_id="key_x", spec=SPEC, state=JobState.RUNNING)
    with pytest.raises(AssertionError):
        jobs.finish(job, state)
    assert job.state == JobState.RUNNING and job.finished_at is None


@pytest.mark.parametrize(
    ("state", "after", "flagged"),
    [
        (JobState.QUEUED, JobState.CANCELED, True),  # nobody runs it: it ends at once
        (JobState.RUNNING, JobState.RUNNING, True),  # its worker stops at the next chunk
        (JobState.SUCCEEDED, JobState.SUCCEEDED, False),  # too late: unchanged
    ],
)
def test_request_cancel(state: JobState, after: JobState, flagged: bool) -> None:
    job = JobRow(key_id="key_x", spec=SPEC, state=state, cancel_requested=False)
    jobs.request_cancel(job)
    assert (job.state, job.cancel_requested) == (after, flagged)
    assert (job.finished_at is not None) == (after == JobState.CANCELED)


def test_retry_later_requeues_without_counting_the_attempt(db: str) -> None:
    job_id = make_job(db, state=JobState.RUNNING, attempts=2, stage="fetching", lease_until=ago(-9))
    with session_scope(db) as session:
        assert jobs.retry_later(session, job_id, attempt=2)
    job = load(db, job_id)
    assert (job.state, job.attempts, job.lease_until, job.stage) == (JobState.QUEUED, 1, None, None)


def test_unfinished_ids_lists_idle_queued_and_orphaned_running(db: str) -> None:
    key = new_key(db)
    idle = make_job(db, key, state=JobState.QUEUED, updated_at=ago(120))
    make_job(db, key, state=JobState.QUEUED)  # fresh: its queue message is likely still on the way
    lapsed = make_job(db, key, state=JobState.RUNNING, lease_until=ago(5))
    make_job(db, key, state=JobState.RUNNING, lease_until=now() + timedelta(seconds=30))
    make_job(db, key, state=JobState.CREATING, updated_at=ago(120))
    make_job(db, key, state=JobState.FAILED, updated_at=ago(120))
    with session_scope(db) as session:
        assert jobs.unfinished_ids(session, idle_for_s=60) == [idle, lapsed]
        assert len(jobs.unfinished_ids(session)) == 3  # idle 0: every queued job, the fresh one too


def test_orphaned_ids_are_running_jobs_without_a_live_lease(db: str) -> None:
    key = new_key(db)
    lapsed = make_job(db, key, state=JobState.RUNNING, lease_until=ago(5))
    unleased = make_job(db, key, state=JobState.RUNNING)
    make_job(db, key, state=JobState.RUNNING, lease_until=now() + timedelta(seconds=30))
    make_job(db, key, state=JobState.QUEUED, updated_at=ago(120))
    make_job(db, key, state=JobState.CREATING, lease_until=ago(5))
    with session_scope(db) as session:
        assert sorted(jobs.orphaned_ids(session)) == sorted([lapsed, unleased])


def test_requeued_returns_orphan_to_queue_and_touches_it(db: str) -> None:
    old = ago(300)
    job_id = make_job(db, state=JobState.RUNNING, attempts=1, stage="rendering", lease_until=ago(5), updated_at=old)
    with session_scope(db) as session:
        jobs.requeued(session, [job_id, "edt_missing"])
    job = load(db, job_id)
    assert (job.state, job.stage, job.lease_until, job.attempts) == (JobState.QUEUED, None, None, 1)
    assert job.updated_at > old + timedelta(seconds=200)
    with session_scope(db) as session:
        assert jobs.unfinished_ids(session, idle_for_s=60) == []


def test_visible_excludes_creating_jobs(db: str) -> None:
    key = new_key(db)
    queued = make_job(db, key, state=JobState.QUEUED)
    make_job(db, key, state=JobState.CREATING)
    with session_scope(db) as session:
        assert [j.id for j in session.scalars(jobs.visible(select(JobRow)))] == [queued]


def test_active_count_counts_queued_and_running_only(db: str) -> None:
    key, other = new_key(db), new_key(db)
    for state in JobState:
        make_job(db, key, state=state)
    make_job(db, other, state=JobState.QUEUED)
    with session_scope(db) as session:
        assert jobs.active_count(session, key) == 2
        assert jobs.active_count(session, other) == 1


def test_to_schema_of_failed_job(db: str, tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path / "store", "http://cmet.test", b"secret", 60)
    job_id = make_job(db, state=JobState.FAILED, error_code=ErrorCode.NO_FACE, error_message="none", output_key="o")
    out = jobs.to_schema(load(db, job_id), storage)
    assert out.error is not None and out.error.code is ErrorCode.NO_FACE and out.error.message == "none"
    assert (out.emotion, out.intensity, out.output_url, out.state) == ("happy", 0.7, None, JobState.FAILED)


def test_to_schema_of_succeeded_job_has_a_download_url(db: str, tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path / "store", "http://cmet.test", b"secret", 60)
    job_id = make_job(db, state=JobState.RUNNING, output_key=jobs.output_key("x"))
    load(db, job_id, lambda job: jobs.finish(job, JobState.SUCCEEDED, result=EditResult(**RESULT)))
    out = jobs.to_schema(load(db, job_id), storage)
    assert out.output_url is not None and out.output_url.startswith("http://cmet.test/v1/files/jobs/x/output.mp4?")
    assert out.error is None and out.result is not None and out.result.frames == 25 and out.progress == 1.0


def test_worker_beat_and_workers_seen(db: str) -> None:
    with session_scope(db) as session:
        jobs.worker_beat(session, "w1")
        jobs.worker_beat(session, "w2")
        session.add(WorkerBeat(name="stale", seen_at=ago(jobs.WORKER_FRESH_S + 5)))
    with session_scope(db) as session:
        jobs.worker_beat(session, "w1")  # a second beat updates, never duplicates
        assert jobs.workers_seen(session) == 2
    with session_scope(db) as session:
        jobs.worker_beat(session, "stale")
    with session_scope(db) as session:
        assert jobs.workers_seen(session) == 3


def test_kinds_and_specs_of_each_kind(db: str) -> None:
    from cmet_jobs.spec import EditSpec, InputRef, SheetSpec
    from cmet_jobs.states import JobKind

    sheet = SheetSpec(video=InputRef(key="jobs/x/input/video"), emotions=("happy", "sad")).model_dump(mode="json")
    edit_id = make_job(db, state=JobState.QUEUED)
    sheet_id = make_job(db, state=JobState.QUEUED, kind=JobKind.SHEET, spec=sheet)
    with session_scope(db) as session:
        assert jobs.kinds(session, [edit_id, sheet_id, "edt_gone"]) == {edit_id: JobKind.EDIT, sheet_id: JobKind.SHEET}
        assert jobs.kinds(session, []) == {}
    assert isinstance(jobs.spec_of(load(db, edit_id)), EditSpec)
    assert jobs.spec_of(load(db, sheet_id)) == SheetSpec.model_validate(sheet)


def test_preview_schema_of_a_succeeded_sheet_signs_the_grid_and_every_cell(db: str, tmp_path: Path) -> None:
    from cmet_jobs.spec import InputRef, SheetSpec
    from cmet_jobs.states import JobKind

    storage = LocalStorage(tmp_path / "store", "http://cmet.test", b"secret", 60)
    spec = SheetSpec(video=InputRef(key="k"), emotions=("happy",), intensities=(0.5, 1.0)).model_dump(mode="json")
    cells = [{"emotion": "happy", "intensity": i, "key": jobs.cell_key("x", f"c{i}.png")} for i in (0.5, 1.0)]
    job_id = make_job(db, state=JobState.RUNNING, kind=JobKind.SHEET, spec=spec, output_key="jobs/x/sheet.png")
    queued = jobs.to_preview(load(db, job_id), storage)
    assert queued.sheet_url is None and queued.cells == [] and queued.kind == "sheet"
    result = SheetResult(frame=3, source_frame=0, cells=[SheetCell(**c) for c in cells], seconds={})
    load(db, job_id, lambda job: jobs.finish(job, JobState.SUCCEEDED, result=result))
    out = jobs.to_preview(load(db, job_id), storage)
    assert out.sheet_url is not None and out.sheet_url.startswith("http://cmet.test/v1/files/jobs/x/sheet.png?")
    assert [c.url.split("?")[0] for c in out.cells] == [
        "http://cmet.test/v1/files/jobs/x/cells/c0.5.png",
        "http://cmet.test/v1/files/jobs/x/cells/c1.0.png",
    ]
    assert (out.frame, out.emotions, out.intensities, out.output_url) == (3, ["happy"], [0.5, 1.0], None)
    assert jobs.payload(load(db, job_id), storage).object == "preview"


def test_each_kind_reads_back_the_result_its_worker_wrote(db: str) -> None:
    from cmet_core.emotion.voice import VoiceSegment
    from cmet_jobs.spec import InputRef, SheetSpec
    from cmet_jobs.states import JobKind

    voice = [  # neutral has no cosine: a None without a default is stored, not dropped
        VoiceSegment(start_s=0, end_s=1, target="happy", intensity=1.0, cosine=0.5),
        VoiceSegment(start_s=1, end_s=2, target="neutral", intensity=1.0, cosine=None),
    ]
    edit = EditResult(**RESULT, connector="c@1.0.0", segments=voice)
    sheet = SheetResult(frame=2, source_frame=1, cells=[SheetCell(emotion="sad", intensity=1, key="k")], seconds={})
    sheet_spec = SheetSpec(video=InputRef(key="k"), emotions=("sad",)).model_dump(mode="json")
    made = {
        JobKind.EDIT: (make_job(db, state=JobState.RUNNING), edit),
        JobKind.CLIP: (make_job(db, state=JobState.RUNNING, kind=JobKind.CLIP), edit),
        JobKind.SHEET: (make_job(db, state=JobState.RUNNING, kind=JobKind.SHEET, spec=sheet_spec), sheet),
    }
    for job_id, result in made.values():
        assert jobs.result_of(load(db, job_id)) is None
        load(db, job_id, lambda job, r=result: jobs.finish(job, JobState.SUCCEEDED, result=r))
        assert jobs.result_of(load(db, job_id)) == result
    # a field a newer worker added is ignored by this reader; a renamed one is an error, never a silent None
    job_id = made[JobKind.EDIT][0]
    load(db, job_id, lambda job: setattr(job, "result", {**RESULT, "from_a_newer_worker": 1}))
    assert jobs.result_of(load(db, job_id)) == EditResult(**RESULT)
    load(db, job_id, lambda job: setattr(job, "result", {**RESULT, "frames": None}))
    with pytest.raises(ValidationError):
        jobs.result_of(load(db, job_id))


def test_the_api_shows_a_spec_without_the_fields_a_newer_api_added(db: str) -> None:
    job_id = make_job(db, state=JobState.QUEUED, spec={**SPEC, "from_a_newer_api": 1})
    job = load(db, job_id)
    with pytest.raises(ValidationError):
        jobs.spec_of(job)  # a worker never runs without an option it does not know
    assert jobs.shown_spec(job) == jobs.spec_of(load(db, make_job(db, state=JobState.QUEUED)))
