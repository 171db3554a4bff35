"""Edits enforce their own soft time limit: Celery's thread and solo pools (the batching worker,
`cmet serve`) never do."""

from __future__ import annotations

import time

import pytest

from cmet_jobs.settings import JobsSettings
from worker.guards import JobTimedOut, Progress


def test_progress_stops_an_edit_past_its_deadline(tmp_path) -> None:  # type: ignore[no-untyped-def]
    settings = JobsSettings(data_dir=tmp_path)
    progress = Progress(settings, storage=None, job_id="edt_x", limit_s=0.05, attempt=1)  # type: ignore[arg-type]
    time.sleep(0.1)
    with pytest.raises(JobTimedOut, match="time limit of 0 s"):
        progress("render", 3, 10)


def test_hard_limit_fires_once_past_its_grace_and_not_after_cancel(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """The watchdog of a stuck edit (thread and solo pools); here `expire` records instead of failing
    the job and ending the process."""
    import threading

    import worker.guards as guards

    monkeypatch.setattr(guards, "HARD_LIMIT_GRACE_S", 0.0)
    fired = threading.Event()
    guards.HardLimit(0.05, fired.set)
    assert fired.wait(2)
    quiet = threading.Event()
    guards.HardLimit(0.2, quiet.set).cancel()
    assert not quiet.wait(0.4)


def test_a_stuck_worker_process_fails_its_job_and_exits(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """`_expire_stuck_job` in a real process: the job record ends `failed` with `timeout`, and the
    process exits (code 70) so its supervisor starts a fresh one."""
    import subprocess
    import sys

    from cmet_jobs.db.models import JobRow
    from cmet_jobs.db.session import migrate, session_scope
    from cmet_jobs.states import JobState
    from tests.records import make_job

    settings = JobsSettings(data_dir=tmp_path)
    migrate(settings.db_url)
    job_id = make_job(settings.db_url, spec={}, state=JobState.RUNNING, attempts=1)
    code = (
        "import worker.tasks as t; from cmet_jobs.settings import JobsSettings; "
        f"t._expire_stuck_job(JobsSettings(), {job_id!r}, 1, 300)"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code],
        env={**__import__("os").environ, "CMET_DATA_DIR": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 70, proc.stderr
    with session_scope(settings.db_url) as session:
        done = session.get(JobRow, job_id)
        assert done is not None and (done.state, done.error_code) == ("failed", "timeout")
