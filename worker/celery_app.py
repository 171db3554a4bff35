"""The workers' Celery app: late acks so a killed worker's job comes back, one job prefetched at a time."""

from __future__ import annotations

import logging
import os
import shutil
import threading

from celery import Celery
from celery.signals import setup_logging, worker_process_init, worker_ready, worker_shutting_down

from cmet_core.logs import configure
from cmet_jobs.queue import MAX_TASK_S, RUN_EDIT_OLD_NAME, RUN_JOB, broker_settings
from cmet_jobs.settings import JobsSettings, get_jobs_settings
from cmet_jobs.webhooks import DELIVER
from worker import metrics, sweeper
from worker.editor import EDITOR
from worker.guards import SHUTDOWN


def _metrics_dir(settings: JobsSettings) -> None:
    """prometheus-client's multiprocess mode needs its folder before any metric exists (so, before the
    prefork children): one folder per worker process tree, emptied at start."""
    if "PROMETHEUS_MULTIPROC_DIR" not in os.environ:
        folder = settings.data_dir / "metrics" / f"worker-{os.getpid()}"
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(folder)


def make_app() -> Celery:
    settings = get_jobs_settings()
    _metrics_dir(settings)
    app = Celery("cmet-worker", broker=settings.broker_url, include=["worker.tasks"])
    app.conf.update(
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_default_queue=settings.queue,
        task_routes={
            RUN_JOB: {"queue": settings.queue},
            RUN_EDIT_OLD_NAME: {"queue": settings.queue},
            DELIVER: {"queue": settings.webhook_queue},
        },
        task_time_limit=MAX_TASK_S,
        task_soft_time_limit=MAX_TASK_S - 30,
        broker_connection_retry_on_startup=True,
        **broker_settings(settings.broker_url, settings.data_dir),
        worker_hijack_root_logger=False,
    )
    check_visibility(app)
    return app


def check_visibility(app: Celery) -> None:
    """Refuse to start when Redis could hand a still-running job to a second worker."""
    timeout = (app.conf.broker_transport_options or {}).get("visibility_timeout")
    if timeout is not None and timeout <= app.conf.task_time_limit:
        raise RuntimeError(
            f"broker visibility_timeout {timeout} s must exceed the task time limit {app.conf.task_time_limit} s"
        )


app = make_app()


@setup_logging.connect
def _setup_logging(loglevel: int | str | None = None, **_: object) -> None:
    """Our one handler instead of Celery's (a receiver here stops Celery installing its own); the level is
    the worker's `-l` unless CMET_LOG_LEVEL is set. Celery's own lines ("... ready.") reach it via root."""
    configure(default_level=logging.getLevelName(loglevel) if isinstance(loglevel, int) else loglevel)


def roles(celery: Celery) -> tuple[bool, bool]:
    """(runs edits, sends webhooks): what this worker does, read from the queues it consumes (`-Q`).
    A webhook worker (`cmet worker --webhooks`) consumes only the webhook queue: it never loads models."""
    webhook_queue = get_jobs_settings().webhook_queue
    consumed = set(celery.amqp.queues.consume_from)
    return bool(consumed - {webhook_queue}), webhook_queue in consumed


@worker_ready.connect
def _start_helpers(sender: object = None, **_: object) -> None:
    edits, webhooks = roles(app)
    sweeper.start(edits=edits, webhooks=webhooks)
    port = get_jobs_settings().worker_metrics_port
    if port:
        metrics.serve(port)
    if edits and not type(getattr(sender, "pool", None)).__module__.endswith(".prefork"):
        _warm_models()  # solo and thread pools run jobs in this process


@worker_process_init.connect
def _warm_prefork_child(**_: object) -> None:
    if roles(app)[0]:
        _warm_models()


@worker_shutting_down.connect
def _shutting_down(**_: object) -> None:
    """SIGTERM (warm shutdown): the jobs of this process get a short grace, then hand themselves back."""

    SHUTDOWN.begin()


def _warm_models() -> None:
    """Load the models in the background as the job process starts, so the first job finds them warm
    (one that arrives sooner waits on the same lock). In a thread: a prefork child that blocks in
    its init for long is killed by Celery."""

    def load() -> None:
        try:
            EDITOR.get(get_jobs_settings())
        except Exception:  # a job reports the same failure with its code; here it is only logged
            logging.getLogger(__name__).warning("loading the models at start failed", exc_info=True)

    threading.Thread(target=load, name="warm-models", daemon=True).start()
