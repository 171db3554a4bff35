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


class JobLost(Exception):
    """This run's lease lapsed and another worker took the job over (this worker was cut off from the
    database or stalled, not dead): it stops and writes nothing more; the job is the new run's."""


class Heartbeat:
    """Renews the lease of the job's `attempt` while the edit runs, whatever the stage is doing, and
    notices when that attempt lost the job."""

    def __init__(self, settings: JobsSettings, job_id: str, attempt: int) -> None:
        self._stop = threading.Event()
        self.lost = threading.Event()
        # in the job's logging context (its lines carry the job id)
        self._thread = threading.Thread(
            target=contextvars.copy_context().run, args=(self._beat, settings, job_id, attempt), daemon=True
        )
        self._thread.start()

    def _beat(self, settings: JobsSettings, job_id: str, attempt: int) -> None:
        while not self._stop.wait(settings.job_lease_s / 4):
            try:
                with session_scope(settings.db_url) as session:
                    held = jobs.renew_lease(session, job_id, attempt, settings.job_lease_s)
            except Exception:  # a missed beat only shortens the lease
                log.warning("lease renewal of %s failed", job_id, exc_info=True)
                continue
            if not held:
                log.warning("job %s was taken over by another worker after its lease lapsed", job_id)
                self.lost.set()
                return

    def stop(self) -> None:
        """Idempotent: the task stops it before recording the end, and again on every way out."""
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

    def __init__(
        self,
        settings: JobsSettings,
        storage: Storage,
        job_id: str,
        limit_s: float,
        attempt: int,
        lost: threading.Event | None = None,
    ) -> None:
        """`attempt`: the run's claim on the record (`jobs.start`); `lost`: set by its `Heartbeat` when another
        worker took the job over."""
        self.settings, self.storage, self.job_id, self.last = settings, storage, job_id, 0.0
        self.limit_s, self.deadline = limit_s, time.monotonic() + limit_s
        self.attempt, self.lost = attempt, lost or threading.Event()

    def __call__(self, stage: Stage, done: int, total: int) -> None:
        if self.lost.is_set():
            raise JobLost(f"taken over by another worker (stage {stage}, {done}/{total} frames)")
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
            if job is not None and not jobs.keep(job, self.attempt, self.settings.job_lease_s):
                raise JobLost(f"taken over by another worker (stage {stage}, {done}/{total} frames)")
            if job is None or job.cancel_requested:
                raise JobCanceled()
            before = int(job.progress * 10)
            job.stage, job.progress = stage, round(lo + (hi - lo) * done / max(total, 1), 4)
            return (
                webhooks.emit(session, job, "edit.progress", self.storage) if int(job.progress * 10) > before else None
            )

    def still_held(self) -> None:
        """Raise JobLost unless this run still holds the job, read from the record now: checked before the
        output is stored, so a run that lost the job does not overwrite the new run's output. A database
        that cannot be read now says nothing: the end is recorded only by the run that holds the job."""
        if self.lost.is_set():
            raise JobLost("taken over by another worker before its output was stored")
        try:
            with session_scope(self.settings.db_url) as session:
                held = jobs.keep(jobs.lock(session, self.job_id), self.attempt, self.settings.job_lease_s)
        except DATABASE_ERRORS as exc:
            log.warning("could not check the claim on %s before storing its output: %s", self.job_id, exc)
            return
        if not held:
            raise JobLost("taken over by another worker before its output was stored")


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
