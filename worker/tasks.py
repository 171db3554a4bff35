"""The edit task: job id in, the record moved through running to a final state, the result in storage.

The record is the source of truth: a redelivered task (after a worker was killed) re-reads it
and either finds the job final and does nothing, or runs it again, writing the same output key.
"""

from __future__ import annotations

import logging
import os
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from celery import Task
from celery.exceptions import SoftTimeLimitExceeded

from cmet_core.errors import InputError
from cmet_core.models.registry import LATEST
from cmet_core.models.errors import ModelLoadError
from cmet_jobs import emotions, jobs, webhooks
from cmet_jobs.db.models import JobState
from cmet_jobs.db.session import session_scope
from cmet_jobs.queue import RUN_EDIT
from cmet_jobs.settings import BatchedModel, JobsSettings, get_jobs_settings
from cmet_jobs.storage import Storage, StorageError, storage_for
from worker import metrics
from worker.celery_app import app

log = logging.getLogger(__name__)

STAGE_SPAN = {"faces": (0.0, 0.15), "encode": (0.15, 0.45), "expression": (0.45, 0.45), "render": (0.45, 0.98)}
PROGRESS_EVERY_S = 0.5
STORAGE_RETRIES = 3


class JobCanceled(Exception):
    """Raised from the progress callback when the API asked to cancel; stops the edit between chunks."""


_EDITOR: Any = None
_EDITOR_LOCK = threading.Lock()


def editor(settings: JobsSettings) -> Any:
    """Models load once per worker process and stay warm (once, even when jobs start in several threads).

    A worker serving the registry's `latest` connector looks again at every job and switches when
    a newer version has been published; jobs already running keep the connector they started with.
    """
    global _EDITOR
    with _EDITOR_LOCK:
        if _EDITOR is None:
            return _load_editor(settings)
        if settings.connector_version == LATEST:
            _follow_latest(_EDITOR)
        return _EDITOR


def _follow_latest(loaded: Any) -> None:
    from cmet_core.models.registry import choose

    try:
        choice = choose(LATEST)
    except ModelLoadError:  # registry unreachable or emptied: keep serving what is loaded
        log.warning("cannot look up the latest connector; keeping %s", loaded.connector_label, exc_info=True)
        return
    current = loaded.models.connector_choice
    assert choice is not None  # a selection always resolves or raises
    if current is None or current.version != choice.version:
        with metrics.MODEL_LOAD.time():
            loaded.use_connector(choice)
        log.info("now serving connector %s", loaded.connector_label)


def _load_editor(settings: JobsSettings) -> Any:
    global _EDITOR
    from cmet_core.models.registry import choose
    from cmet_core.models.runtime import RuntimeOptions
    from cmet_core.models.sets import select_set
    from cmet_core.pipeline import Editor
    from worker.batcher import BatchingRunner, BatchPolicy, SpeechBatcher

    with metrics.MODEL_LOAD.time():
        choice = choose(settings.connector_version)
        loaded = Editor.load(select_set(settings.models_set or settings.resolved_models_dir), RuntimeOptions.from_settings(settings), connector=choice)
    # jobs running in this process's threads share the models; their frames share forwards
    def policy(model: BatchedModel) -> BatchPolicy:
        return BatchPolicy(*settings.batching(model))


    def observe(model: str, rows: int) -> None:
        metrics.BATCH.labels(model=model).observe(rows)

    loaded.runner = BatchingRunner(loaded.runner, policy("edtalk_encoder"), observe, policy("edtalk_renderer"))  # type: ignore[assignment]
    loaded.embed_speech = SpeechBatcher(loaded.embed_speech, policy("emotion2vec"), observe)  # type: ignore[method-assign]
    _EDITOR = loaded
    metrics.record_gpu_memory()
    return loaded


def _fetch(entry: dict[str, str], dest: Path, settings: JobsSettings, max_bytes: int) -> Path:
    if "key" in entry:
        storage_for(settings).get_file(entry["key"], dest)
        return dest
    from cmet_jobs.net_guard import BlockedURLError, fetch_to_file

    try:
        fetch_to_file(entry["url"], dest, max_bytes=max_bytes, allow_private=settings.allow_private_urls,
                      schemes=settings.url_schemes)
    except BlockedURLError as exc:
        raise InputError(exc.code, f"{entry['url']}: {exc}") from None
    return dest


class _Heartbeat:
    """Renews the job's lease while the edit runs, whatever the stage is doing."""

    def __init__(self, settings: JobsSettings, job_id: str) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, args=(settings, job_id), daemon=True)
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


class _Progress:
    """Writes progress to the record at most every half second, notices cancel requests there, and
    enforces the soft time limit: Celery's thread and solo pools (batching workers, `cmet serve`)
    never enforce time limits themselves, so the edit checks its own deadline at every chunk."""

    def __init__(self, settings: JobsSettings, storage: Storage, job_id: str, limit_s: float) -> None:
        self.settings, self.storage, self.job_id, self.last = settings, storage, job_id, 0.0
        self.limit_s, self.deadline = limit_s, time.monotonic() + limit_s

    def __call__(self, stage: str, done: int, total: int) -> None:
        moment = time.monotonic()
        if moment > self.deadline:
            raise JobTimedOut(f"the edit ran past its time limit of {self.limit_s:.0f} s (stage {stage}, {done}/{total} frames)")
        if moment - self.last < PROGRESS_EVERY_S and done < total:
            return
        self.last = moment
        lo, hi = STAGE_SPAN.get(stage, (0.0, 0.0))
        with session_scope(self.settings.db_url) as session:
            job = jobs.lock(session, self.job_id)
            if job is None or job.cancel_requested:
                raise JobCanceled()
            before = int(job.progress * 10)
            job.stage, job.progress = stage, round(lo + (hi - lo) * done / max(total, 1), 4)
            event = webhooks.emit(session, job, "edit.progress", self.storage) if int(job.progress * 10) > before else None
        webhooks.dispatch(self.settings, [event])


def _finish(settings: JobsSettings, job_id: str, state: JobState, code: str | None = None, message: str | None = None, result: dict[str, Any] | None = None, output_key: str | None = None) -> None:
    with session_scope(settings.db_url) as session:
        job = jobs.lock(session, job_id)
        if job is None or JobState(job.state).final:
            return
        jobs.finish(job, state, code, message, result)
        if output_key is not None:
            job.output_key = output_key
        event = _ended(session, job, storage_for(settings))
    webhooks.dispatch(settings, [event])


def _ended(session: Any, job: Any, storage: Storage) -> str | None:
    """Count a job that just reached its final state and record its webhook (dispatched after commit)."""
    metrics.JOBS.labels(state=job.state).inc()
    return webhooks.emit(session, job, f"edit.{job.state}", storage)


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


HARD_LIMIT_GRACE_S = 10.0


class _HardLimit:
    """The last resort for an edit stuck where the soft limit cannot see it (inside one forward or a
    decode): past the hard limit plus a grace, `expire` runs. Under prefork Celery kills the child at
    the hard limit first; thread and solo pools have nothing else."""

    def __init__(self, limit_s: float, expire: Callable[[], None]) -> None:
        self._timer = threading.Timer(limit_s + HARD_LIMIT_GRACE_S, expire)
        self._timer.daemon = True
        self._timer.start()

    def cancel(self) -> None:
        self._timer.cancel()


def _expire_stuck_job(settings: JobsSettings, job_id: str, limit_s: float) -> None:
    """Fail the job for good (its client learns why), then end the process: a thread cannot be
    stopped. Other jobs of this process come back through their lapsed leases; the supervisor or
    the container's restart policy starts the worker again."""
    try:
        storage_for(settings).delete_prefix(jobs.output_key(job_id))
        _finish(settings, job_id, JobState.FAILED, "timeout", f"the edit was stuck past its hard time limit of {limit_s:.0f} s")
    finally:
        log.critical("edit %s stuck past its hard time limit; restarting the worker process", job_id)
        logging.shutdown()
        os._exit(70)


@app.task(name=RUN_EDIT, bind=True, acks_late=True, reject_on_worker_lost=True, max_retries=None)
def run_edit(self: Task, job_id: str, storage_attempt: int = 0) -> str:
    """One edit job; `storage_attempt` counts the retries after storage failures (backoff 2, 4, 8 s)."""
    settings = get_jobs_settings()
    storage = storage_for(settings)
    try:
        with session_scope(settings.db_url) as session:
            job = jobs.start(session, job_id, settings.job_max_attempts)
            if job is None:
                return "skipped"
            state = JobState(job.state)
            if state.final:  # ended by start: canceled meanwhile, or out of attempts
                event = _ended(session, job, storage)
            else:
                request, inputs, key_id = dict(job.request), dict(job.inputs), job.key_id
                if job.attempts == 1 and job.started_at is not None:
                    metrics.QUEUE_WAIT.observe((job.started_at - job.created_at).total_seconds())
                event = webhooks.emit(session, job, "edit.running", storage)
    except jobs.JobBusy as busy:
        raise self.retry(countdown=busy.retry_in, max_retries=None) from None
    webhooks.dispatch(settings, [event])
    if state.final:
        return state.value

    heartbeat = _Heartbeat(settings, job_id)
    soft, hard = _limits(self)
    watchdog = _HardLimit(hard, lambda: _expire_stuck_job(settings, job_id, hard))
    try:
        with tempfile.TemporaryDirectory(prefix=f"cmet-{job_id}-") as scratch:
            work = Path(scratch)
            video = _fetch(inputs["video"], work / "video", settings, settings.max_video_bytes)
            speech = tuple(_fetch(e, work / f"speech{i}", settings, settings.max_speech_bytes) for i, e in enumerate(inputs.get("speech", [])))
            progress = _Progress(settings, storage, job_id, soft)
            result = _edit(settings, key_id, request, video, speech, work / jobs.OUTPUT_NAME, progress)
            key = jobs.output_key(job_id)
            storage.put_file(key, work / jobs.OUTPUT_NAME, "video/mp4")
        _finish(settings, job_id, JobState.SUCCEEDED, result=result, output_key=key)
        return "succeeded"
    except JobCanceled:
        storage.delete_prefix(jobs.output_key(job_id))
        _finish(settings, job_id, JobState.CANCELED)
        return "canceled"
    except (JobTimedOut, SoftTimeLimitExceeded) as exc:
        storage.delete_prefix(jobs.output_key(job_id))
        _finish(settings, job_id, JobState.FAILED, "timeout", str(exc) or f"the edit ran past its time limit of {soft:.0f} s")
        return "failed"
    except InputError as exc:
        _finish(settings, job_id, JobState.FAILED, exc.code, str(exc))
        return "failed"
    except StorageError as exc:
        if storage_attempt < STORAGE_RETRIES:  # counted apart from JobBusy's retries, which wait for a live lease
            with session_scope(settings.db_url) as session:
                job = jobs.lock(session, job_id)
                if job is not None:
                    job.state, job.attempts, job.stage = JobState.QUEUED, max(0, job.attempts - 1), None
            raise self.retry(countdown=2 ** (storage_attempt + 1), kwargs={"storage_attempt": storage_attempt + 1}, max_retries=None) from exc
        _finish(settings, job_id, JobState.FAILED, "storage", str(exc))
        return "failed"
    except Exception as exc:
        log.exception("edit %s crashed", job_id)
        _finish(settings, job_id, JobState.FAILED, "internal", f"unexpected {type(exc).__name__}: {exc}")
        return "failed"
    finally:
        watchdog.cancel()
        heartbeat.stop()


def _edit(settings: JobsSettings, key_id: str, request: dict[str, Any], video: Path, speech: tuple[Path, ...], out: Path, progress: _Progress) -> dict[str, Any]:
    from cmet_core.options import EditOptions
    from cmet_core.targets import EmotionTarget

    target = EmotionTarget(emotion=request.get("emotion"), speech=speech, intensity=request.get("intensity", 1.0))
    with session_scope(settings.db_url) as session:
        library = emotions.library_for_key(session, key_id)
    box = request.get("face_box")
    options = EditOptions(
        face_index=request.get("face_index"),
        face_box=tuple(box) if box else None,
        source_frame=request.get("source_frame"),
        max_duration_s=settings.max_video_duration_s,
    )
    result = editor(settings).edit(video, out, target, options, progress, library)
    for stage, seconds in result.stage_seconds.items():
        metrics.STAGE.labels(stage=stage).observe(seconds)
    metrics.FRAMES.inc(result.frames)
    return {"frames": result.frames, "fps": result.fps, "duration_s": result.duration_s, "width": result.width, "height": result.height,
            "connector": result.connector}


@app.task(name=emotions.BUILD, acks_late=True)
def build_emotion(emotion_id: str) -> str:
    """Embed a registered emotion's clips, store its library entry, delete the clips."""
    from cmet_core.emotions import load_builtin_library
    from cmet_jobs.db.models import CustomEmotion

    settings = get_jobs_settings()
    storage = storage_for(settings)
    with session_scope(settings.db_url) as session:
        row = session.get(CustomEmotion, emotion_id)
        if row is None or row.state != "pending":
            return "skipped"
        name, keys = row.name, list(row.clips.get("keys", []))
    code, message, entry = None, None, None
    try:
        with tempfile.TemporaryDirectory(prefix=f"cmet-{emotion_id}-") as scratch:
            paths = []
            for i, key in enumerate(keys):
                paths.append(Path(scratch) / f"speech{i}")
                storage.get_file(key, paths[-1])
            embeddings = editor(settings).embed_speech(paths)
        library = load_builtin_library()
        entry = library.add_from_embeddings(name, list(embeddings), [Path(k).name for k in keys], source_set="api").model_dump(mode="json")
    except InputError as exc:
        code, message = exc.code, str(exc)
    except ValueError as exc:
        code, message = "bad_speech", str(exc)
    with session_scope(settings.db_url) as session:
        row = session.get(CustomEmotion, emotion_id)
        if row is None:
            return "deleted"
        row.state, row.entry, row.error_code, row.error_message = ("ready" if entry else "failed"), entry, code, message
    storage.delete_prefix(f"emotions/{emotion_id}/")
    return "ready" if entry else "failed"
