"""API keys: only their SHA-256 is stored; the secret is shown once, at creation."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import UTC, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from cmet_jobs.db.models import ApiKey, now
from cmet_jobs.webhook_signing import new_secret

KEY_PREFIX = "cmet_"


def hash_key(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


@dataclass(frozen=True)
class NewKey:
    record: ApiKey
    secret: str


def create_key(
    session: Session, name: str, max_concurrent_jobs: int = 4, max_submissions_per_minute: int = 60
) -> NewKey:
    secret = KEY_PREFIX + secrets.token_urlsafe(32)
    record = ApiKey(
        name=name,
        prefix=secret[:12],
        key_hash=hash_key(secret),
        webhook_secret=new_secret(),
        max_concurrent_jobs=max_concurrent_jobs,
        max_submissions_per_minute=max_submissions_per_minute,
    )
    session.add(record)
    session.flush()
    return NewKey(record, secret)


def rotate_webhook_secret(session: Session, key: ApiKey, grace_s: int) -> ApiKey:
    """A new webhook secret for `key`; the current one becomes the previous, which signs deliveries beside
    the new one for `grace_s` (a secret older than that is dropped: two rotations in a row keep one old)."""
    locked = session.get(ApiKey, key.id, with_for_update=True)
    assert locked is not None  # the caller authenticated with it
    locked.previous_webhook_secret = locked.webhook_secret
    locked.previous_secret_until = now() + timedelta(seconds=grace_s)
    locked.webhook_secret = new_secret()
    session.flush()
    return locked


def signing_secrets(key: ApiKey) -> list[str]:
    """The secrets a delivery is signed with now: the key's own, and the previous one in its grace period."""
    previous, until = key.previous_webhook_secret, key.previous_secret_until
    if previous is None or until is None or until.replace(tzinfo=UTC) <= now():
        return [key.webhook_secret]
    return [key.webhook_secret, previous]


def find_key(session: Session, secret: str) -> ApiKey | None:
    record = session.scalar(select(ApiKey).where(ApiKey.key_hash == hash_key(secret)))
    return record if record is not None and record.revoked_at is None else None


def revoke_key(session: Session, key_id: str) -> bool:
    record = session.get(ApiKey, key_id)
    if record is None or record.revoked_at is not None:
        return False
    record.revoked_at = now()
    return True


def list_keys(session: Session) -> list[ApiKey]:
    return list(session.scalars(select(ApiKey).order_by(ApiKey.created_at)))
