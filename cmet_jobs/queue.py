"""Submitting job ids to the workers' queue by task name, so the API never imports the worker (or torch).

Redis is the broker of deployments. The embedded default (`cmet serve`) uses kombu's
`filesystem://` transport under CMET_DATA_DIR instead (`cmet_jobs.local_queue`), so one machine needs
no server; it can lose a message when a process dies, which the startup reconciler covers from the job records.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from celery import Celery
from kombu.exceptions import OperationalError

from cmet_core.errors import ErrorCode
from cmet_jobs.errors import OUTAGE_RETRY_AFTER_S, RequestError
from cmet_jobs.settings import JobsSettings
from cmet_jobs.states import JobKind

if TYPE_CHECKING:
    from cmet_core.media.video import VideoInfo

RUN_JOB = "cmet.run_job"
"""The task that runs a job of any kind (edit, clip preview, contact sheet); the worker reads the kind from the
record."""
RUN_EDIT_OLD_NAME = "cmet.run_edit"
"""What `RUN_JOB` was called before it was named for every kind. Messages an older API queued under it must not
be lost at an upgrade, so the worker still registers this name for the same task; nothing sends it any more."""
MAX_TASK_S = 3600
VISIBILITY_TIMEOUT_S = MAX_TASK_S + 300
"""Above the longest task, so Redis never hands a running job to a second worker. A killed
worker's job is found sooner through its lapsed lease on the record (worker.sweeper)."""


LOAD_S = 300
"""Fixed part of an edit's time: loading models, fetching inputs, the expression stage."""
FRAME_S = 0.8
"""Model work per frame on a CPU with full-size models (EDTalk on its 256x256 crop), whatever the
frame's size: the old rule's 20 s per input second at 25 fps."""
PIXELS_PER_S = 20e6
"""Work that grows with the frame's size: decoding, face detection, paste-back and encoding."""


def time_limits(frames: int | None, pixels_per_frame: int | None) -> tuple[int, int]:
    """(soft, hard) seconds for an edit of `frames` frames of `pixels_per_frame` pixels (from the
    probe): LOAD_S + frames x (FRAME_S + pixels_per_frame / PIXELS_PER_S), capped at MAX_TASK_S.
    The work grows with frames and pixels, not with seconds: a 2 s clip may hold 100,000 frames.
    Unknown (URL and asset inputs, re-queued jobs) gets the cap."""
    if frames is None or pixels_per_frame is None:
        hard = MAX_TASK_S
    else:
        hard = int(min(MAX_TASK_S, LOAD_S + frames * (FRAME_S + pixels_per_frame / PIXELS_PER_S)))
    return hard - 30, hard


QUEUED_AT_HEADER = "cmet_queued_at"
"""Message header: when the message was queued (Unix seconds), so the oldest waiting job's age can be read off
the broker without the job records."""


LOCAL_TRANSPORT = "cmet_jobs.local_queue:Transport"
"""The filesystem transport with whole, once-taken messages; kombu's own can hand a half-written file to a worker."""


def broker_settings(broker_url: str, data_dir: Path) -> dict[str, Any]:
    """The Celery settings of the broker at `broker_url`, the same in the API and the workers."""
    if broker_url.startswith("filesystem://"):
        folder = data_dir / "broker"
        (folder / "queue").mkdir(parents=True, exist_ok=True)
        (folder / "control").mkdir(parents=True, exist_ok=True)
        # control_folder too: kombu's default is ./control, a folder in whatever directory the process started in
        return {
            "broker_transport": LOCAL_TRANSPORT,
            "broker_transport_options": {
                "data_folder_in": str(folder / "queue"),
                "data_folder_out": str(folder / "queue"),
                "control_folder": str(folder / "control"),
                "store_processed": False,
                "polling_interval": 0.05,
            },
        }
    # "priority": a worker asks Redis for its queues in the order it consumes them (previews first), never round robin
    return {
        "broker_transport_options": {
            "visibility_timeout": VISIBILITY_TIMEOUT_S,
            "unacked_restore_interval": 2,
            "unacked_restore_throttle": 1,
            "queue_order_strategy": "priority",
        }
    }


@lru_cache(maxsize=4)
def _client(broker_url: str, data_dir: Path) -> Celery:
    app = Celery("cmet-api", broker=broker_url, set_as_current=False)
    app.conf.update(broker_settings(broker_url, data_dir))
    return app


def send(settings: JobsSettings, task: str, record_id: str, queue_name: str | None = None, **options: Any) -> None:
    """Queue `task` for one record id (on the edit queue unless named): messages carry ids only, the record
    is the truth. A broker that cannot be reached (after Celery's own publish retries) is a 503
    `queue_unavailable`."""
    try:
        _client(settings.broker_url, settings.data_dir).send_task(
            task,
            args=[record_id],
            queue=queue_name or settings.queue,
            headers={QUEUED_AT_HEADER: time.time()},
            **options,
        )
    except OperationalError as exc:
        raise RequestError(
            ErrorCode.QUEUE_UNAVAILABLE,
            f"the job queue cannot be reached ({exc})",
            {"Retry-After": str(OUTAGE_RETRY_AFTER_S)},
        ) from exc


def submit(
    settings: JobsSettings,
    job_id: str,
    video: VideoInfo | None = None,
    kind: JobKind = JobKind.EDIT,
    frames: int | None = None,
) -> None:
    """Queue a job with time limits scaled to its video's probe (None: not probed yet, the cap), or to the
    `frames` it renders where that is fewer (a preview); previews go to the preview queue. One task runs
    every kind: the worker reads the kind from the record."""
    rendered, pixels = (video.frame_count, video.width * video.height) if video is not None else (None, None)
    if rendered is not None and frames is not None:
        rendered = min(rendered, frames)
    soft, hard = time_limits(rendered, pixels)
    queue_name = settings.preview_queue if kind.preview else settings.queue
    send(settings, RUN_JOB, job_id, queue_name, soft_time_limit=soft, time_limit=hard)


def ping_broker(settings: JobsSettings) -> None:
    with _client(settings.broker_url, settings.data_dir).connection_for_write() as conn:
        conn.ensure_connection(max_retries=1, timeout=2)


@dataclass(frozen=True)
class Waiting:
    """One queue's messages waiting for a worker (not counting ones a worker holds unacknowledged)."""

    queue: str
    messages: int
    oldest_age_s: float | None
    """Since the oldest waiting message was queued; None when none waits, the broker keeps no order to read
    (the filesystem transport), or the message came from an API older than its header."""


def waiting(settings: JobsSettings) -> list[Waiting]:
    """The preview and edit queues, read off the broker: what autoscaling and the API's metrics watch."""
    with _client(settings.broker_url, settings.data_dir).connection_for_write() as conn:
        conn.ensure_connection(max_retries=1, timeout=2)  # a scrape or a sweep round waits no longer on a lost broker
        channel = conn.default_channel
        redis = getattr(channel, "client", None)  # kombu's Redis transport: the redis-py client of the channel
        return [_waiting(conn, redis, name) for name in (settings.preview_queue, settings.queue)]


def _waiting(conn: Any, redis: Any, name: str) -> Waiting:
    if redis is None:
        try:
            count = int(conn.default_channel.queue_declare(queue=name, passive=True).message_count)
        except conn.channel_errors:  # a queue never declared here: nothing waits
            count = 0
        return Waiting(name, count, None)
    # kombu's Redis transport keeps a queue as a list, pushing on the left and taking from the right: the
    # oldest message is the last one (the service sets no message priorities, which would add more lists)
    count = int(redis.llen(name))
    oldest = redis.lindex(name, -1) if count else None
    return Waiting(name, count, _age(oldest))


def _age(message: bytes | None) -> float | None:
    if message is None:
        return None
    try:
        queued_at = json.loads(message)["headers"][QUEUED_AT_HEADER]
        return max(0.0, time.time() - float(queued_at))
    except (ValueError, KeyError, TypeError):  # not a message this service wrote, or one without the header
        return None


def waiting_messages(settings: JobsSettings) -> int:
    """Messages waiting in the edit and preview queues (not counting ones a worker holds unacknowledged)."""
    return sum(w.messages for w in waiting(settings))
