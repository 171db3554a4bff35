"""The running stack shared by the service tests: PostgreSQL, Redis, moto S3, uvicorn, a Celery worker."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.service.stack import Stack


def new_key(stack: Stack, name: str = "test", **limits: int) -> str:
    return new_key_and_webhook_secret(stack, name, **limits)[0]


def new_key_and_webhook_secret(stack: Stack, name: str = "test", **limits: int) -> tuple[str, str]:
    from cmet_jobs.db.session import session_scope
    from cmet_jobs.keys import create_key

    with session_scope(stack.extra["database_url"]) as session:
        made = create_key(session, name, **limits)
        return made.secret, made.record.webhook_secret


def upload_asset(client: httpx.Client, path: Path, kind: str, content_type: str) -> str:
    """The id of an asset of `kind` holding `path`, uploaded as a client does (a record, then the PUT)."""
    made = client.post("/v1/uploads", json={"kind": kind, "filename": path.name, "content_type": content_type})
    assert made.status_code == 201, made.text
    upload = made.json()
    put = httpx.put(upload["upload_url"], content=path.read_bytes(), headers=upload["headers"], timeout=30)
    assert put.status_code == 200, put.text
    return str(upload["id"])


@pytest.fixture(scope="session")
def api_key(stack: Stack) -> str:
    return new_key(stack, "main", max_concurrent_jobs=50, max_submissions_per_minute=500)


@pytest.fixture
def client(stack: Stack, api_key: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=stack.api_url, headers={"Authorization": f"Bearer {api_key}"}, timeout=60) as c:
        yield c
