"""The Celery tasks: a job of any kind (edit, clip preview, contact sheet), a custom emotion's build, a probe, a
webhook delivery. JobRow ids in, records moved through the state machine (`cmet_jobs.jobs`), results in storage.

The record is the source of truth: a redelivered task (after a worker was killed) re-reads it
and either finds the job final and does nothing, or runs it again, writing the same output key.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from celery import Task
from celery.exceptions import SoftTimeLimitExceeded
from pydantic import ValidationError
from sqlalchemy import update
from sqlalchemy.orm import Session

from cmet_core.emotion.library import EmotionLibrary, load_builtin_library
from cmet_core.errors import ErrorCode, InputError
from cmet_core.logs import job_context
from cmet_core.networks.errors import ModelLoadError
from cmet_jobs import batches, emotions, jobs, probes, queue, webhooks
from cmet_jobs.db.models import CustomEmotion, JobRow
from cmet_jobs.db.session import DATABASE_ERRORS, retrying, session_scope
from cmet_jobs.errors import OUTAGE_RETRY_AFTER_S
from cmet_jobs.queue import RUN_EDIT_OLD_NAME, RUN_JOB
from cmet_jobs.results import EditResult, JobResult
from cmet_jobs.settings import JobsSettings, get_jobs_settings
from cmet_jobs.spec import EditSpec, InputRef, SheetSpec, run_options
from cmet_jobs.states import EmotionState, JobState
from cmet_jobs.storage import Storage, StorageError, storage_for
from worker import metrics, scratch
from worker.celery_app import app
from worker.editor import EDITOR
from worker.guards import HardLimit, Heartbeat, JobCanceled, JobHandedBack, JobLost, JobTimedOut, Progress
from worker.previews import render_sheet

log = logging.getLogger(__name__)

STORAGE_RETRIES = 3


def _fetch(ref: InputRef, dest: Path, settings: JobsSettings, max_bytes: int) -> Path:
    if ref.key is not None:
        storage_for(settings).get_file(ref.key, dest)
        return dest
    from cmet_jobs.net_guard import BlockedURLError, fetch_to_file  # deferred: httpx

    assert ref.url is not None
    try:
        fetch_to_file(
            ref.url, dest, max_bytes=max_bytes, allow_private=settings.allow_private_urls, schemes=settings.url_schemes
        )
    except BlockedURLError as exc:
        raise InputError(exc.code, f"{ref.url}: {exc}") from None
    return dest


def _finish(
    settings: JobsSettings,
    job_id: str,
    state: JobState,
    code: ErrorCode | None = None,
    message: str | None = None,
    result: JobResult | None = None,
    output_key: str | None = None,
    *,
    attempt: int,
) -> None:
    """Record the job's end, waiting for a database that is away; the webhook goes out after the commit.
    Only while `attempt` holds the job: a run that lost it (taken over while this worker was cut off)
    records nothing."""

    def record() -> list[str | None]:
        with session_scope(settings.db_url) as session:
            job = jobs.lock(session, job_id)
            if job is None or not jobs.keep(job, attempt, settings.job_lease_s):
                if job is not None and not job.state.final:
                    log.warning("job %s is no longer this run's (attempt %d): its end is not recorded", job_id, attempt)
                return []
            jobs.finish(job, state, code, message, result)
            if output_key is not None:
                job.output_key = output_key
            return _ended(session, job, storage_for(settings))

    webhooks.dispatch(settings, retrying(record, f"recording the end of {job_id}"))


def _ended(session: Session, job: JobRow, storage: Storage) -> list[str | None]:
    """Count a job that just reached its final state and record its webhook, and its batch's if it was the
    batch's last (both dispatched after commit)."""
    metrics.JOBS.labels(state=job.state).inc()
    return [webhooks.emit(session, job, webhooks.event_name(job, job.state), storage), batches.job_ended(session, job)]


@app.task(name=webhooks.DELIVER, acks_late=True)
def deliver_webhook(delivery_id: str) -> str:
    outcome = webhooks.deliver(get_jobs_settings(), delivery_id)
    if outcome in ("succeeded", "failed", "disabled", "pending"):
        metrics.WEBHOOKS.labels(outcome="retry_scheduled" if outcome == "pending" else outcome).inc()
    return outcome


def _limits(task: Task) -> tuple[float, float]:
    """(soft, hard) seconds: what the API scaled to this clip's length (message header), else the app's defaults."""
    hard, soft = task.request.timelimit or (None, None)
    return float(soft or app.conf.task_soft_time_limit), float(hard or app.conf.task_time_limit)


def _expire_stuck_job(settings: JobsSettings, job_id: str, attempt: int, limit_s: float) -> None:
    """Fail the job for good (its client learns why), then end the process: a thread cannot be
    stopped. Other jobs of this process come back through their lapsed leases; the supervisor or
    the container's restart policy starts the worker again."""
    try:
        storage_for(settings).delete_prefix(jobs.output_key(job_id))
        _finish(
            settings,
            job_id,
            JobState.FAILED,
            ErrorCode.TIMEOUT,
            f"the edit was stuck past its hard time limit of {limit_s:.0f} s",
            attempt=attempt,
        )
    finally:
        log.critical("edit %s stuck past its hard time limit; restarting the worker process", job_id)
        logging.shutdown()
        os._exit(70)


@dataclass(frozen=True)
class Ending:
    """How an edit that raised ends: its final state, code and message, and whether a partial output is dropped."""

    state: JobState
    code: ErrorCode | None = None
    message: str | None = None
    drop_output: bool = False


def _timed_out(exc: BaseException, soft_s: float) -> Ending:
    """Our own limit says where the edit was; Celery's (prefork) says nothing useful (`SoftTimeLimitExceeded()`)."""
    message = str(exc) if isinstance(exc, JobTimedOut) else f"the edit ran past its time limit of {soft_s:.0f} s"
    return Ending(JobState.FAILED, ErrorCode.TIMEOUT, message, True)


def _input(exc: BaseException, _: float) -> Ending:
    assert isinstance(exc, InputError)
    return Ending(JobState.FAILED, exc.code, str(exc))


def _crashed(exc: BaseException, _: float) -> Ending:
    log.error("edit crashed", exc_info=exc)
    return Ending(JobState.FAILED, ErrorCode.INTERNAL, f"unexpected {type(exc).__name__}: {exc}")


ENDINGS: tuple[
    tuple[type[BaseException] | tuple[type[BaseException], ...], Callable[[BaseException, float], Ending]], ...
] = (
    (JobCanceled, lambda _exc, _soft: Ending(JobState.CANCELED, drop_output=True)),
    ((JobTimedOut, SoftTimeLimitExceeded), _timed_out),
    (InputError, _input),
    (StorageError, lambda exc, _soft: Ending(JobState.FAILED, ErrorCode.STORAGE, str(exc))),
    (ModelLoadError, lambda exc, _soft: Ending(JobState.FAILED, ErrorCode.MODELS_UNAVAILABLE, str(exc))),
    (Exception, _crashed),
)
"""Exception kinds to final states, first match wins (storage errors are retried before they end here)."""


def ending_for(exc: BaseException, soft_s: float) -> Ending:
    for kinds, ending in ENDINGS:
        if isinstance(exc, kinds):
            return ending(exc, soft_s)
    raise exc


@dataclass(frozen=True)
class _Claimed:
    spec: EditSpec | SheetSpec
    key_id: str
    attempt: int
    """The run's claim on the record (`jobs.keep`)."""


def _claim(settings: JobsSettings, storage: Storage, job_id: str) -> _Claimed | JobState | None:
    """Start the job on its record: what to run, or the state `start` ended it in, or None (nothing to run)."""
    with session_scope(settings.db_url) as session:
        job = jobs.start(session, job_id, settings.job_max_attempts, settings.job_lease_s)
        if job is None:
            return None
        if job.state.final:  # ended by start: canceled meanwhile, or out of attempts
            events = _ended(session, job, storage)
            claimed: _Claimed | JobState = job.state
        else:
            if job.attempts == 1 and job.started_at is not None:
                metrics.QUEUE_WAIT.observe((job.started_at - job.created_at).total_seconds())
            try:
                claimed = _Claimed(jobs.spec_of(job), job.key_id, job.attempts)
                events = [webhooks.emit(session, job, webhooks.event_name(job, "running"), storage)]
            except ValidationError as exc:  # a record no worker can run: end it, never loop on it
                jobs.finish(job, JobState.FAILED, ErrorCode.INTERNAL, f"the job's spec cannot be read: {exc}")
                claimed = job.state
                try:
                    events = _ended(session, job, storage)
                except ValidationError:  # the API cannot show the record either, so no webhook can carry it
                    events = [batches.job_ended(session, job)]
    webhooks.dispatch(settings, events)
    return claimed


def _behind_a_waiting_edit(task: Task, settings: JobsSettings, job_id: str) -> bool:
    """Previews go before waiting edits, but not for ever: a preview taken from a preview queue after
    `previews_before_edit` previews started while an edit waits is queued again on the edit queue, behind
    that edit (same time limits), and this message ends. Taken from the edit queue, it runs: it waited
    its turn there."""
    routing = (task.request.delivery_info or {}).get("routing_key") or ""
    if routing != settings.preview_queue and not routing.startswith(settings.preview_queue + "."):
        return False  # a device's own preview queue is `<preview_queue>.<device>` (devices.DeviceSlot.queues)
    with session_scope(settings.db_url) as session:
        job = session.get(JobRow, job_id)
        if job is None or job.state != JobState.QUEUED or not job.kind.preview:
            return False
        ahead = jobs.previews_ahead_of_an_edit(session)
    if ahead is None or ahead < settings.previews_before_edit:
        return False
    hard, soft = task.request.timelimit or (None, None)
    queue.send(settings, RUN_JOB, job_id, settings.queue, soft_time_limit=soft, time_limit=hard)
    log.info("a preview steps behind an edit that %d previews went before", ahead)
    return True


def _run_in_context(self: Task, job_id: str, storage_attempt: int = 0) -> str:
    """One job of any kind; `storage_attempt` counts the retries after storage failures (backoff 2, 4, 8 s)."""
    with job_context(job_id):
        return _run_job(self, job_id, storage_attempt)


run_job = app.task(name=RUN_JOB, bind=True, acks_late=True, reject_on_worker_lost=True, max_retries=None)(
    _run_in_context
)
run_job_by_old_name = app.task(
    name=RUN_EDIT_OLD_NAME, bind=True, acks_late=True, reject_on_worker_lost=True, max_retries=None
)(_run_in_context)
"""Messages queued under the task's old name before an upgrade run the same job (see `RUN_EDIT_OLD_NAME`)."""


def _run_job(self: Task, job_id: str, storage_attempt: int) -> str:
    settings = get_jobs_settings()
    storage = storage_for(settings)
    if _behind_a_waiting_edit(self, settings, job_id):
        return "behind a waiting edit"
    try:
        claimed = _claim(settings, storage, job_id)
    except jobs.JobBusy as busy:
        raise self.retry(countdown=busy.retry_in, max_retries=None) from None
    except DATABASE_ERRORS as exc:  # the record cannot be read yet: the message comes back later
        log.warning("the database is unavailable; job %s tried again in %d s", job_id, OUTAGE_RETRY_AFTER_S)
        raise self.retry(countdown=OUTAGE_RETRY_AFTER_S, max_retries=None) from exc
    if not isinstance(claimed, _Claimed):
        return "skipped" if claimed is None else claimed.value

    attempt = claimed.attempt
    heartbeat = Heartbeat(settings, job_id, attempt)
    soft, hard = _limits(self)
    watchdog = HardLimit(hard, lambda: _expire_stuck_job(settings, job_id, attempt, hard))
    try:
        with scratch.job_folder(settings.scratch_root, job_id) as work:
            progress = Progress(settings, storage, job_id, soft, attempt, heartbeat.lost)
            result, key = _work(settings, storage, job_id, claimed, work, progress)
        heartbeat.stop()  # before the end is recorded: a beat after it would find the job no longer running
        _finish(settings, job_id, JobState.SUCCEEDED, result=result, output_key=key, attempt=attempt)
        return JobState.SUCCEEDED.value
    except JobLost as lost:
        # the job is another worker's now: nothing of this run is recorded, stored or re-queued
        log.warning("stopped: %s", lost)
        return "lost"
    except JobHandedBack as stopping:
        # queued again on the record (the lease freed, the attempt not counted) and in the queue
        heartbeat.stop()
        if not _handed_back(settings, job_id, attempt):
            return "lost"
        log.info("handed back to the queue: %s", stopping)
        raise self.retry(countdown=1, max_retries=None) from None
    except Exception as exc:
        heartbeat.stop()  # before the job is handed back or ended: a beat after it would take that for a take-over
        if isinstance(exc, StorageError) and storage_attempt < STORAGE_RETRIES:
            # counted apart from JobBusy's retries, which wait for a live lease
            if not _handed_back(settings, job_id, attempt):
                return "lost"
            countdown = 2 ** (storage_attempt + 1)
            raise self.retry(
                countdown=countdown, kwargs={"storage_attempt": storage_attempt + 1}, max_retries=None
            ) from exc
        ending = ending_for(exc, soft)
        if ending.drop_output and _holds(settings, job_id, attempt):
            storage.delete_prefix(jobs.output_key(job_id))
        message = scratch.public_message(ending.message, settings.scratch_root) if ending.message else None
        _finish(settings, job_id, ending.state, ending.code, message, attempt=attempt)
        return ending.state.value
    finally:
        watchdog.cancel()
        heartbeat.stop()


def _holds(settings: JobsSettings, job_id: str, attempt: int) -> bool:
    """Whether this run still holds the job (False where the database cannot say now): only then may it delete
    the job's output, which a run that took the job over may have stored."""
    try:
        with session_scope(settings.db_url) as session:
            return jobs.keep(jobs.lock(session, job_id), attempt, settings.job_lease_s)
    except DATABASE_ERRORS:
        return False


def _handed_back(settings: JobsSettings, job_id: str, attempt: int) -> bool:
    """Put the job back to `queued` (the attempt not counted); False when this run no longer holds it, or
    the database cannot be reached (a worker cut off from it: its lease lapses and a sweeper re-queues it)."""
    try:
        with session_scope(settings.db_url) as session:
            return jobs.retry_later(session, job_id, attempt)
    except DATABASE_ERRORS as exc:
        log.warning("job %s not handed back (%s); it comes back when its lease lapses", job_id, exc)
        return False


def _work(
    settings: JobsSettings, storage: Storage, job_id: str, claimed: _Claimed, work: Path, progress: Progress
) -> tuple[JobResult, str]:
    """Run the job by its kind and store what it made: (its result, the output's storage key)."""
    if isinstance(claimed.spec, SheetSpec):
        video = _fetch(claimed.spec.video, work / "video", settings, settings.max_video_bytes)
        library = _library(settings, claimed.key_id)
        return render_sheet(settings, storage, job_id, claimed.spec, video, library, work, progress)
    result = _edit(settings, claimed.spec, claimed.key_id, work, progress)
    key = jobs.output_key(job_id)
    progress.still_held()
    storage.put_file(key, work / jobs.OUTPUT_NAME, "video/mp4")
    return result, key


def _library(settings: JobsSettings, key_id: str) -> EmotionLibrary:
    """The built-in library plus the key's custom emotions, waiting for a database that is away."""

    def read_library() -> EmotionLibrary:
        with session_scope(settings.db_url) as session:
            return emotions.library_for_key(session, key_id)

    return retrying(read_library, "reading the emotion library")


def _edit(settings: JobsSettings, spec: EditSpec, key_id: str, work: Path, progress: Progress) -> EditResult:
    video = _fetch(spec.video, work / "video", settings, settings.max_video_bytes)
    speech = [
        _fetch(ref, work / f"speech{i}", settings, settings.max_speech_bytes) for i, ref in enumerate(spec.speech)
    ]
    track, pose, eyes = (
        _fetch(ref, work / name, settings, limit) if ref is not None else None
        for ref, name, limit in (
            (spec.speech_track, "speech_track", settings.max_speech_bytes),
            (spec.pose_video, "pose_video", settings.max_video_bytes),
            (spec.eye_video, "eye_video", settings.max_video_bytes),
        )
    )
    library = _library(settings, key_id)
    limit = {"speech": settings.max_speech_bytes, "video": settings.max_video_bytes}
    target = spec.edit_target(speech, lambda ref, name, kind: _fetch(ref, work / name, settings, limit[kind]))
    editor = EDITOR.get(settings)
    output = work / jobs.OUTPUT_NAME
    choices, limits = run_options(spec, settings)
    result = editor.edit(
        video,
        output,
        target,
        choices,
        progress,
        library,
        speech_track=track,
        pose_video=pose,
        eye_video=eyes,
        limits=limits,
    )
    for stage, seconds in result.stage_seconds.items():
        metrics.STAGE.labels(stage=stage).observe(seconds)
    metrics.FRAMES.inc(result.frames)
    return EditResult(
        frames=result.frames,
        fps=result.fps,
        duration_s=result.duration_s,
        width=result.width,
        height=result.height,
        connector=result.connector or None,
        segments=list(result.voice) if result.voice else None,
        quality=result.quality,
        quality_error=result.quality_problem,
        speakers=result.speakers if choices.faces and any(face.speaker for face in choices.faces) else None,
    )


@app.task(name=emotions.BUILD, acks_late=True)
def build_emotion(emotion_id: str) -> str:
    """Embed a registered emotion's clips, store its library entry, delete the clips."""
    with job_context(emotion_id):
        return _build_emotion(emotion_id)


def _build_emotion(emotion_id: str) -> str:
    settings = get_jobs_settings()
    storage = storage_for(settings)
    with session_scope(settings.db_url) as session:
        row = session.get(CustomEmotion, emotion_id)
        if row is None or row.state != EmotionState.PENDING:
            return "skipped"
        name, keys = row.name, list(row.clips.get("keys", []))
    code: ErrorCode | None = None
    message: str | None = None
    entry: dict[str, Any] | None = None
    try:
        with scratch.job_folder(settings.scratch_root, emotion_id) as work:
            paths = []
            for i, key in enumerate(keys):
                paths.append(work / f"speech{i}")
                storage.get_file(key, paths[-1])
            embeddings = EDITOR.get(settings).embed_speech(paths)
        library = load_builtin_library()
        entry = library.add_from_embeddings(
            name, list(embeddings), [Path(k).name for k in keys], source_set="api"
        ).model_dump(mode="json")
    except InputError as exc:
        code, message = exc.code, str(exc)
    except ValueError as exc:
        code, message = ErrorCode.BAD_SPEECH, str(exc)
    except StorageError:
        # deleting the emotion removes its clips first: then the record is gone too (`_settle` says so);
        # else the store lost them, and the emotion fails with a code instead of staying pending
        code, message = ErrorCode.STORAGE, "the speech clips could not be read from storage; register them again"
    return _settle(settings, storage, emotion_id, entry, code, message)


def _settle(
    settings: JobsSettings,
    storage: Storage,
    emotion_id: str,
    entry: dict[str, Any] | None,
    code: ErrorCode | None,
    message: str | None,
) -> str:
    """The build's outcome on the record, only while it is still pending: a DELETE during the build leaves
    nothing to update (one log line, no error), whatever moment it came at."""
    state = EmotionState.READY if entry else EmotionState.FAILED
    with session_scope(settings.db_url) as session:
        pending = (CustomEmotion.id == emotion_id) & (CustomEmotion.state == EmotionState.PENDING)
        values = {"state": state, "entry": entry, "error_code": code, "error_message": message}
        updated = session.scalar(update(CustomEmotion).where(pending).values(**values).returning(CustomEmotion.id))
    storage.delete_prefix(f"emotions/{emotion_id}/")
    if updated is None:
        log.info("emotion %s was deleted during its build", emotion_id)
        return "deleted"
    return state.value


@app.task(name=probes.PROBE, acks_late=True)
def probe_asset(asset_id: str) -> str:
    """Measure an uploaded video and find its face; the answer goes to storage beside the asset."""
    settings = get_jobs_settings()
    storage = storage_for(settings)
    with job_context(asset_id), scratch.job_folder(settings.scratch_root, asset_id) as work:
        return probes.run(settings, storage, asset_id, work)
