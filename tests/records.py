"""Job records in a database of their own, for the tests of the state machine and the worker's endings."""

from __future__ import annotations

import uuid
from typing import Any

from cmet_jobs.db.models import ApiKey, JobRow
from cmet_jobs.db.session import session_scope
from cmet_jobs.spec import EditSpec, InputRef

SPEC = EditSpec(video=InputRef(key="jobs/x/input/video"), emotion="happy", intensity=0.7).model_dump(mode="json")


def new_key(url: str) -> str:
    with session_scope(url) as session:
        key = ApiKey(name="t", prefix="p", key_hash=uuid.uuid4().hex, webhook_secret="whsec_x")
        session.add(key)
        session.flush()
        return key.id


def make_job(url: str, key_id: str | None = None, **fields: Any) -> str:
    """A job of a (new) key; `spec` and `state` among `fields` override the defaults (SPEC, creating)."""
    with session_scope(url) as session:
        job = JobRow(key_id=key_id or new_key(url), **{"spec": SPEC, **fields})
        session.add(job)
        session.flush()
        return job.id
