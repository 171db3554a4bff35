"""The states of jobs, custom emotions and webhook deliveries, and what a key's per-minute rates count: one enum
each, for records and schemas alike."""

from __future__ import annotations

from enum import StrEnum


class JobState(StrEnum):
    """`creating` while the API stores a new job's inputs (invisible to clients and workers), then
    queued, running and one of the three final states."""

    CREATING = "creating"
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELED = "canceled"

    @property
    def final(self) -> bool:
        return self in (JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELED)


class JobKind(StrEnum):
    """What a job makes: a full edit, a clip preview (an edit of a window) or a contact sheet. Previews
    go to the preview queue, are listed under /v1/previews and send `preview.*` webhooks."""

    EDIT = "edit"
    CLIP = "clip"
    SHEET = "sheet"

    @property
    def preview(self) -> bool:
        return self is not JobKind.EDIT

    @property
    def id_prefix(self) -> str:
        """`sht_` for a contact sheet; a clip preview is read at /v1/edits/{id} as edits are, so `edt_`."""
        return "sht" if self is JobKind.SHEET else "edt"


class BatchState(StrEnum):
    """A batch is `running` while any of its edits is queued or running, then `completed` (whatever each
    edit's own end: the counts say how many succeeded)."""

    RUNNING = "running"
    COMPLETED = "completed"


class EmotionState(StrEnum):
    """A custom emotion is `pending` until a worker embedded its clips, then `ready` or `failed`."""

    PENDING = "pending"
    READY = "ready"
    FAILED = "failed"


class DeliveryState(StrEnum):
    PENDING = "pending"
    SENDING = "sending"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    DISABLED = "disabled"


class Work(StrEnum):
    """What a `SubmissionStamp` counts, each against a per-minute rate of its own: jobs (edits, previews and
    custom emotions: the key's `max_submissions_per_minute`), probes of uploads and asset records (settings)."""

    JOB = "job"
    PROBE = "probe"
    UPLOAD = "upload"
