"""Submitting job ids to the workers' queue by task name, so the API never imports the worker (or torch).

Redis is the broker of deployments. The embedded default (`cmet serve`) uses kombu's
`filesystem://` transport under CMET_DATA_DIR instead, so one machine needs no server; it
can lose a message when a process dies, which the startup reconciler covers from the job records.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any

from celery import Celery

from cmet_jobs.settings import JobsSettings

RUN_EDIT = "cmet.run_edit"
MAX_TASK_S = 3600
VISIBILITY_TIMEOUT_S = MAX_TASK_S + 300
"""Above the longest task, so Redis never hands a running job to a second worker. A killed
worker's job is found sooner through its lapsed lease on the record (worker.sweeper)."""


def time_limits(duration_s: float | None) -> tuple[int, int]:
    """(soft, hard) seconds for an edit of a clip this long: about 20 s per input second on a
    CPU with full-size models, plus loading, capped at MAX_TASK_S; unknown lengths get the cap."""
    hard = MAX_TASK_S if duration_s is None else int(min(MAX_TASK_S, 300 + 20 * duration_s))
    return hard - 30, hard


def broker_options(broker_url: str, data_dir: Path) -> dict[str, Any]:
    if broker_url.startswith("filesystem://"):
        folder = data_dir / "broker"
        (folder / "queue").mkdir(parents=True, exist_ok=True)
        (folder / "control").mkdir(parents=True, exist_ok=True)
        # control_folder too: kombu's default is ./control, a folder in whatever directory the process started in
        return {
            "data_folder_in": str(folder / "queue"),
            "data_folder_out": str(folder / "queue"),
            "control_folder": str(folder / "control"),
            "store_processed": False,
            "polling_interval": 0.05,
        }
    return {"visibility_timeout": VISIBILITY_TIMEOUT_S, "unacked_restore_interval": 2, "unacked_restore_throttle": 1}


@lru_cache(maxsize=4)
def _client(broker_url: str, data_dir: Path) -> Celery:
    app = Celery("cmet-api", broker=broker_url, set_as_current=False)
    app.conf.broker_transport_options = broker_options(broker_url, data_dir)
    return app


def send(settings: JobsSettings, task: str, record_id: str, queue_name: str | None = None, **options: Any) -> None:
    """Queue `task` for one record id (on the edit queue unless named): messages carry ids only, the record
    is the truth."""
    _client(settings.broker_url, settings.data_dir).send_task(
        task, args=[record_id], queue=queue_name or settings.queue, **options
    )


def submit(settings: JobsSettings, job_id: str, duration_s: float | None = None) -> None:
    soft, hard = time_limits(duration_s)
    send(settings, RUN_EDIT, job_id, soft_time_limit=soft, time_limit=hard)


def ping_broker(settings: JobsSettings) -> None:
    with _client(settings.broker_url, settings.data_dir).connection_for_write() as conn:
        conn.ensure_connection(max_retries=1, timeout=2)


def waiting_messages(settings: JobsSettings) -> int:
    """Messages waiting in the edit queue (not counting ones a worker holds unacknowledged)."""
    with _client(settings.broker_url, settings.data_dir).connection_for_write() as conn:
        try:
            channel = conn.default_channel  # kombu's stubs type it as StdChannel, which lacks queue_declare
            return int(channel.queue_declare(queue=settings.queue, passive=True).message_count)  # type: ignore[attr-defined]
        except conn.channel_errors:  # kombu's Redis transport forgets an empty queue: nothing waits
            return 0
