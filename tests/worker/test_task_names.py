"""The job task's name says it runs every kind, and a message queued under its old name still runs."""

from __future__ import annotations

from cmet_jobs.queue import RUN_EDIT_OLD_NAME, RUN_JOB
from worker.celery_app import app
from worker.tasks import run_job, run_job_by_old_name


def test_the_old_task_name_runs_the_same_job_on_the_edit_queue() -> None:
    """An API from before the rename queued `cmet.run_edit`; after the upgrade that message must not be lost."""
    new, old = app.tasks[RUN_JOB], app.tasks[RUN_EDIT_OLD_NAME]
    assert (new, old) == (run_job, run_job_by_old_name)
    assert new.name != old.name and old.run.__func__ is new.run.__func__  # type: ignore[attr-defined]
    assert (old.acks_late, old.reject_on_worker_lost, old.max_retries) == (True, True, None)
    routes = app.conf.task_routes
    assert routes[RUN_EDIT_OLD_NAME] == routes[RUN_JOB] == {"queue": app.conf.task_default_queue}
