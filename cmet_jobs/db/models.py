"""Job records and what they refer to: the record is the source of truth, the queue carries ids only."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, DateTime, Float, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy import Enum as SAEnum
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

from cmet_jobs.states import DeliveryState, EmotionState, JobKind, JobState, Work


def now() -> datetime:
    return datetime.now(UTC)


def new_id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex}"


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC on every backend (SQLite hands back naive datetimes otherwise)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:  # noqa: ARG002 (SQLAlchemy's signature)
        return value.replace(tzinfo=UTC) if value is not None and value.tzinfo is None else value


class Base(DeclarativeBase):
    type_annotation_map = {datetime: UTCDateTime(), dict[str, Any]: JSON}


def _enum(kind: type[StrEnum]) -> SAEnum:
    """A state column: the enum's values as plain strings (no database enum type, so a new state needs no DDL)."""
    return SAEnum(
        kind, native_enum=False, create_constraint=False, length=16, values_callable=lambda k: [m.value for m in k]
    )


class ApiKey(Base):
    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(String(40), primary_key=True, default=lambda: new_id("key"))
    name: Mapped[str] = mapped_column(String(200))
    prefix: Mapped[str] = mapped_column(String(16), index=True)
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    webhook_secret: Mapped[str] = mapped_column(String(120))
    # the secret before the last rotation, which still signs deliveries (beside the new one) until then
    previous_webhook_secret: Mapped[str | None] = mapped_column(String(120), default=None)
    previous_secret_until: Mapped[datetime | None] = mapped_column(default=None)
    max_concurrent_jobs: Mapped[int] = mapped_column(Integer, default=4)
    max_submissions_per_minute: Mapped[int] = mapped_column(Integer, default=60)
    created_at: Mapped[datetime] = mapped_column(default=now)
    revoked_at: Mapped[datetime | None] = mapped_column(default=None)


class Asset(Base):
    """A file a client uploaded (presigned PUT) to use as a video or speech input. A job copies it
    under its own prefix when it is accepted; the asset itself is kept for reuse until it has gone
    unused for the retention period (`JobsSettings.asset_retention_s`)."""

    __tablename__ = "assets"
    __table_args__ = (Index("ix_assets_key_created", "key_id", "created_at"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True, default=lambda: new_id("ast"))
    key_id: Mapped[str] = mapped_column(ForeignKey("api_keys.id"), index=True)
    storage_key: Mapped[str] = mapped_column(String(300))
    filename: Mapped[str] = mapped_column(String(300), default="")
    declared_type: Mapped[str] = mapped_column(String(100), default="")
    max_bytes: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(default=now)
    last_used_at: Mapped[datetime | None] = mapped_column(default=None)


class BatchRow(Base):
    """Edits submitted together (`POST /v1/batches`): their records point here (`JobRow.batch_id`); the
    batch keeps their ids in order, its Idempotency-Key and body digest, and its `batch.completed` webhook."""

    __tablename__ = "batches"
    __table_args__ = (UniqueConstraint("key_id", "idempotency_key", name="uq_batches_key_idempotency"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True, default=lambda: new_id("bat"))
    key_id: Mapped[str] = mapped_column(ForeignKey("api_keys.id"), index=True)
    edit_ids: Mapped[dict[str, Any]] = mapped_column(JSON, default=lambda: {"ids": []})
    idempotency_key: Mapped[str | None] = mapped_column(String(255), default=None)
    request_hash: Mapped[str | None] = mapped_column(String(64), default=None)
    webhook_url: Mapped[str | None] = mapped_column(Text, default=None)
    webhook_events: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    created_at: Mapped[datetime] = mapped_column(default=now)
    completed_at: Mapped[datetime | None] = mapped_column(default=None)
    """Set, and `batch.completed` recorded, by the transaction that ended its last edit."""


class JobRow(Base):
    """One job of any kind, as stored; the API shows it as `schemas.Job` or `schemas.Preview` (`jobs.to_schema`)."""

    __tablename__ = "jobs"
    __table_args__ = (
        UniqueConstraint("key_id", "idempotency_key", name="uq_jobs_key_idempotency"),
        Index("ix_jobs_key_created", "key_id", "created_at"),
        Index("ix_jobs_key_kind_created", "key_id", "kind", "created_at"),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True, default=lambda: new_id("edt"))
    key_id: Mapped[str] = mapped_column(ForeignKey("api_keys.id"), index=True)
    kind: Mapped[JobKind] = mapped_column(_enum(JobKind), default=JobKind.EDIT, server_default=JobKind.EDIT.value)
    state: Mapped[JobState] = mapped_column(_enum(JobState), default=JobState.CREATING, index=True)
    progress: Mapped[float] = mapped_column(Float, default=0.0)
    stage: Mapped[str | None] = mapped_column(String(32), default=None)
    spec: Mapped[dict[str, Any]] = mapped_column(JSON)
    """The job's `EditSpec` (a contact sheet's `SheetSpec`) as JSON; `cmet_jobs.jobs.spec_of` reads it back."""
    output_key: Mapped[str | None] = mapped_column(String(300), default=None)
    result: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    error_code: Mapped[str | None] = mapped_column(String(64), default=None)
    error_message: Mapped[str | None] = mapped_column(Text, default=None)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    cancel_requested: Mapped[bool] = mapped_column(default=False)
    lease_until: Mapped[datetime | None] = mapped_column(default=None)
    idempotency_key: Mapped[str | None] = mapped_column(String(255), default=None)
    request_hash: Mapped[str | None] = mapped_column(String(64), default=None)
    webhook_url: Mapped[str | None] = mapped_column(Text, default=None)
    webhook_events: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    batch_id: Mapped[str | None] = mapped_column(
        ForeignKey("batches.id", ondelete="SET NULL"), index=True, default=None
    )
    created_at: Mapped[datetime] = mapped_column(default=now)
    updated_at: Mapped[datetime] = mapped_column(default=now, onupdate=now)
    started_at: Mapped[datetime | None] = mapped_column(default=None)
    finished_at: Mapped[datetime | None] = mapped_column(default=None)


class SubmissionStamp(Base):
    """One accepted submission, probe or asset record of a key (`work`): the per-minute rates count these,
    so deleting jobs or assets frees no quota. Stamps older than the window are deleted as the next one of
    their kind is checked."""

    __tablename__ = "submissions"
    __table_args__ = (Index("ix_submissions_key_at", "key_id", "at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    key_id: Mapped[str] = mapped_column(ForeignKey("api_keys.id", ondelete="CASCADE"))
    at: Mapped[datetime] = mapped_column(default=now)
    work: Mapped[Work] = mapped_column(_enum(Work), default=Work.JOB, server_default=Work.JOB.value)


class CustomEmotion(Base):
    """A named emotion a key registered from speech clips: a worker embeds the clips, stores the
    library entry (vector, digest, provenance) and deletes the clips."""

    __tablename__ = "emotions"
    __table_args__ = (UniqueConstraint("key_id", "name", name="uq_emotions_key_name"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True, default=lambda: new_id("emo"))
    key_id: Mapped[str] = mapped_column(ForeignKey("api_keys.id"), index=True)
    name: Mapped[str] = mapped_column(String(64))
    state: Mapped[EmotionState] = mapped_column(_enum(EmotionState), default=EmotionState.PENDING)
    clips: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    entry: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    error_code: Mapped[str | None] = mapped_column(String(64), default=None)
    error_message: Mapped[str | None] = mapped_column(Text, default=None)
    created_at: Mapped[datetime] = mapped_column(default=now)


class WebhookDelivery(Base):
    """One webhook message and its attempts; `msg_id` is deterministic so a re-run job sends each event once.
    A job's events name the job, `batch.completed` its batch."""

    __tablename__ = "webhook_deliveries"

    id: Mapped[str] = mapped_column(String(40), primary_key=True, default=lambda: new_id("whd"))
    job_id: Mapped[str | None] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), index=True, default=None)
    batch_id: Mapped[str | None] = mapped_column(ForeignKey("batches.id", ondelete="CASCADE"), index=True, default=None)
    key_id: Mapped[str] = mapped_column(ForeignKey("api_keys.id"))
    event: Mapped[str] = mapped_column(String(32))
    msg_id: Mapped[str] = mapped_column(String(120), unique=True)
    url: Mapped[str] = mapped_column(Text)
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    state: Mapped[DeliveryState] = mapped_column(_enum(DeliveryState), default=DeliveryState.PENDING, index=True)
    attempts: Mapped[dict[str, Any]] = mapped_column(JSON, default=lambda: {"items": []})
    next_attempt_at: Mapped[datetime | None] = mapped_column(default=now, index=True)
    created_at: Mapped[datetime] = mapped_column(default=now)
    updated_at: Mapped[datetime] = mapped_column(default=now, onupdate=now)


class WorkerBeat(Base):
    """Each worker's last sign of life, so readiness can say whether anyone will run the jobs."""

    __tablename__ = "worker_beats"

    name: Mapped[str] = mapped_column(String(200), primary_key=True)
    seen_at: Mapped[datetime] = mapped_column(default=now)
