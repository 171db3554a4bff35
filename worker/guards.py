"""What watches a running edit: its lease, its progress and cancel requests, its time limits.

Celery's thread and solo pools (batching workers, `cmet serve`) never enforce time limits, so
the edit checks its own soft deadline at every chunk and a timer catches one stuck inside a
forward or a decode.
"""

from __future__ import annotations

import contextvars
import logging
import threading
import time
from collections.abc import Callable

from cmet_core.stages import Stage
from cmet_jobs import jobs, webhooks
from cmet_jobs.db.session import DATABASE_ERRORS, session_scope
from cmet_jobs.settings import JobsSettings
from cmet_jobs.storage import Storage

log = logging.getLogger(__name__)

STAGE_SPAN: dict[Stage, tuple[float, float]] = {
    Stage.STARTING: (0.0, 0.0),
    Stage.FACES: (0.0, 0.15),
    Stage.ENCODE: (0.15, 0.45),
    Stage.MEL: (0.45, 0.45),
    Stage.LIPS: (0.45, 0.45),
    Stage.EXPRESSION: (0.45, 0.45),
    Stage.ENHANCE: (0.45, 0.45),
    Stage.RENDER: (0.45, 0.95),
    Stage.QUALITY: (0.95, 0.98),
}
"""The share of the job each stage's progress moves through (done / total within it); every stage has one."""
PROGRESS_EVERY_S = 0.5


class JobCanceled(Exception):
    """Raised from the progress callback when the API asked to cancel; stops the edit between chunks."""


class Heartbeat:
    """Renews the job's lease while the edit runs, whatever the stage is doing."""

    def __init__(self, settings: JobsSettings, job_id: str) -> None:
        self._stop = threading.Event()
        # in the job's logging context (its lines carry the job id)
        self._thread = threading.Thread(
            target=contextvars.copy_context().run, args=(self._beat, settings, job_id), daemon=True
        )
        self._thread.start()

    def _beat(self, settings: JobsSettings, job_id: str) -> None:
        while not self._stop.wait(jobs.LEASE_S / 4):
            try:
                with session_scope(settings.db_url) as session:
                    jobs.renew_lease(session, job_id)
            except Exception:  # a missed beat only shortens the lease
                log.warning("lease renewal of %s failed", job_id, exc_info=True)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)


class JobTimedOut(Exception):
    """The edit ran past its soft time limit; raised from the progress callback between chunks."""


class JobHandedBack(Exception):
    """The worker is stopping: the edit goes back to the queue (its attempt not counted) rather than
    hold the stop up; raised from the progress callback between chunks."""


class Shutdown:
    """When this worker process was asked to stop (SIGTERM: Celery's warm shutdown takes no new job
    and waits for the running ones). Jobs running in this process (solo and thread pools) get
    `job_handback_s` to finish, then hand themselves back, so a stop fits `docker stop`'s 10 s."""

    def __init__(self) -> None:
        self._at: float | None = None

    def begin(self) -> None:
        if self._at is None:
            self._at = time.monotonic()

    def hand_back_due(self, grace_s: float) -> bool:
        return self._at is not None and time.monotonic() - self._at >= grace_s


SHUTDOWN = Shutdown()


class Progress:
    """Writes progress to the record at most every half second, notices cancel requests there, and
    enforces the soft time limit: Celery's thread and solo pools (batching workers, `cmet serve`)
    never enforce time limits themselves, so the edit checks its own deadline at every chunk."""

    def __init__(self, settings: JobsSettings, storage: Storage, job_id: str, limit_s: float) -> None:
        self.settings, self.storage, self.job_id, self.last = settings, storage, job_id, 0.0
        self.limit_s, self.deadline = limit_s, time.monotonic() + limit_s

    def __call__(self, stage: Stage, done: int, total: int) -> None:
        if SHUTDOWN.hand_back_due(self.settings.job_handback_s):
            raise JobHandedBack(f"the worker is stopping (stage {stage}, {done}/{total} frames)")
        moment = time.monotonic()
        if moment > self.deadline:
            raise JobTimedOut(
                f"the edit ran past its time limit of {self.limit_s:.0f} s (stage {stage}, {done}/{total} frames)"
            )
        if moment - self.last < PROGRESS_EVERY_S and done < total:
            return
        try:
            event = self._record(stage, done, total)
        except DATABASE_ERRORS as exc:  # the database is away: the edit goes on, a later chunk writes again
            log.warning("progress of %s not recorded: %s", self.job_id, exc)
            return
        self.last = moment
        webhooks.dispatch(self.settings, [event])

    def _record(self, stage: Stage, done: int, total: int) -> str | None:
        """Progress and stage on the record; a cancel request found there stops the edit."""
        lo, hi = STAGE_SPAN[stage]
        with session_scope(self.settings.db_url) as session:
            job = jobs.lock(session, self.job_id)
            if job is None or job.cancel_requested:
                raise JobCanceled()
            before = int(job.progress * 10)
            job.stage, job.progress = stage, round(lo + (hi - lo) * done / max(total, 1), 4)
            return (
                webhooks.emit(session, job, "edit.progress", self.storage) if int(job.progress * 10) > before else None
            )


HARD_LIMIT_GRACE_S = 10.0


class HardLimit:
    """The last resort for an edit stuck where the soft limit cannot see it (inside one forward or a
    decode): past the hard limit plus a grace, `expire` runs. Under prefork Celery kills the child at
    the hard limit first; thread and solo pools have nothing else."""

    def __init__(self, limit_s: float, expire: Callable[[], None]) -> None:
        self._timer = threading.Timer(limit_s + HARD_LIMIT_GRACE_S, expire)
        self._timer.daemon = True
        self._timer.start()

    def cancel(self) -> None:
        self._timer.cancel()
