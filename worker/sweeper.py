"""A thread in each worker's main process: a webhook worker hands due webhook retries to the
queue; an edit worker re-queues jobs whose message was lost, removes jobs a dead API left half
created, deletes assets unused for the retention period and stray files under assets/ (no record, or
over the asset's size limit), and removes orphaned scratch folders (a
killed worker's, see `worker.scratch`), at start and then every `SCRATCH_EVERY` rounds.

Retries wait as rows with a `next_attempt_at`, not as delayed queue messages (see
`cmet_jobs.webhooks`); this loop is what wakes them. The delivery task claims its row atomically,
so a doubly queued retry is sent once.

A broker restart (Redis without persistence, or a failover) loses waiting messages; the job
records do not. When the queue is empty but records say jobs have waited for a while (or run
with a lapsed lease), they are submitted again. A duplicate message is harmless: a final job is
skipped and a live one's lease turns the duplicate away.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading

from cmet_jobs import batches, jobs, queue, uploads, webhooks
from cmet_jobs.db.session import session_scope
from cmet_jobs.settings import JobsSettings, get_jobs_settings
from cmet_jobs.states import JobKind, JobState
from cmet_jobs.storage import storage_for
from worker import scratch

log = logging.getLogger(__name__)
SWEEP_EVERY_S = 1.0
RECONCILE_EVERY = 3
SCRATCH_EVERY = 30
IDLE_BEFORE_REQUEUE_S = 15.0
SWEEP_ASSETS_EVERY = 60  # rounds: about a minute


def reconcile(settings: JobsSettings) -> list[str]:
    """Orphaned running jobs always; queued ones only when the queue is empty (else their message may just be
    waiting)."""
    with session_scope(settings.db_url) as session:
        queue_empty = queue.waiting_messages(settings) == 0
        lost = jobs.unfinished_ids(session, IDLE_BEFORE_REQUEUE_S) if queue_empty else jobs.orphaned_ids(session)
        jobs.requeued(session, lost)
        kinds = jobs.kinds(session, lost)
    for job_id in lost:
        queue.submit(settings, job_id, kind=kinds.get(job_id, JobKind.EDIT))
    if lost:
        log.warning("re-queued %d job(s) whose queue message was lost", len(lost))
    return lost


def remove_abandoned_creations(settings: JobsSettings) -> list[str]:
    """Records and stored inputs of jobs whose API process died mid-submission (state `creating`), and the
    batch they were made for, which then has no job left."""
    storage = storage_for(settings)
    with session_scope(settings.db_url) as session:
        abandoned = jobs.abandoned_creations(session, settings.creating_timeout_s)
    for job_id in abandoned:
        storage.delete_prefix(jobs.job_prefix(job_id))
        with session_scope(settings.db_url) as session:
            job = jobs.lock(session, job_id)
            if job is not None and job.state == JobState.CREATING:
                session.delete(job)
                batches.drop_if_empty(session, job.batch_id)  # a batch is made whole or not at all
    if abandoned:
        log.warning("removed %d job(s) left half-created by a dead API process", len(abandoned))
    return abandoned


def sweep_assets(settings: JobsSettings) -> int:
    """Assets no new edit used for `asset_retention_s`, deleted (edits keep their own copies); then the
    files under assets/ that no record owns or that are over their asset's size limit."""
    storage = storage_for(settings)
    with session_scope(settings.db_url) as session:
        swept = uploads.sweep_expired(session, storage, settings.asset_retention_s)
        strays = uploads.sweep_strays(session, storage)
    if swept:
        log.info("deleted %d asset(s) unused for %d s", swept, settings.asset_retention_s)
    if strays:
        log.warning("deleted %d file(s) under assets/ with no record or over their size limit", strays)
    return swept + strays


def _loop(stop: threading.Event, edits: bool, webhooks_too: bool, records: bool) -> None:
    settings = get_jobs_settings()
    name = f"{socket.gethostname()}:{os.getpid()}"
    rounds = RECONCILE_EVERY - 1  # beat on the first round: readiness waits for it
    if edits:
        _sweep_scratch(settings)
    while not stop.wait(SWEEP_EVERY_S):
        rounds += 1
        if edits and rounds % SCRATCH_EVERY == 0:
            _sweep_scratch(settings)
        try:
            if webhooks_too:
                webhooks.dispatch(settings, list(webhooks.due(settings)))
            if edits and rounds % RECONCILE_EVERY == 0:
                with session_scope(settings.db_url) as session:
                    jobs.worker_beat(session, name)  # readiness counts edit workers only
            if records and rounds % RECONCILE_EVERY == 0:
                reconcile(settings)
                remove_abandoned_creations(settings)
            if records and rounds % SWEEP_ASSETS_EVERY == 0:
                sweep_assets(settings)
        except Exception:  # a database or broker hiccup must not end the loop
            log.exception("sweep failed; retrying")


def _sweep_scratch(settings: JobsSettings) -> None:
    try:
        scratch.sweep(settings.scratch_root)
    except OSError:  # a folder that cannot be read or removed now may be next time
        log.warning("sweeping the scratch folders failed", exc_info=True)


def start(*, edits: bool = True, webhooks: bool = True, records: bool | None = None) -> threading.Event:
    """Sweep what this worker serves: an edit worker its scratch folders (and it beats, for readiness) and the
    job records, a webhook worker the due deliveries; `records` alone is the standalone sweeper
    (`cmet worker --sweeper`), which keeps the records swept while the edit workers are scaled to zero."""
    stop = threading.Event()
    args = (stop, edits, webhooks, edits if records is None else records)
    threading.Thread(target=_loop, args=args, name="cmet-sweeper", daemon=True).start()
    return stop


def run_alone() -> None:
    """The standalone sweeper: the job records and assets until SIGTERM or SIGINT; no queue is consumed, no
    model loaded, no scratch kept."""
    stop = start(edits=False, webhooks=False, records=True)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()
