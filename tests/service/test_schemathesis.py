"""Schemathesis against the app in-process: generated requests from openapi.yaml's schema get no 5xx
and responses that conform to it (status codes, content types, bodies)."""

from __future__ import annotations

import tempfile
import uuid
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error, positive_data_acceptance

from cmet_jobs.db.session import session_scope
from cmet_jobs.keys import create_key
from cmet_jobs.settings import JobsSettings
from service.app import create_app
from tests.service.stack import REDIS_URL

pytestmark = pytest.mark.stack("Redis")  # the broker; the database is SQLite

_scratch = Path(tempfile.mkdtemp(prefix="cmet-schemathesis-"))
_settings = JobsSettings(
    data_dir=_scratch,
    broker_url=REDIS_URL,
    queue=f"cmet-fuzz-{uuid.uuid4().hex[:8]}",
    public_url="http://localhost",
)
app = create_app(_settings)
with session_scope(_settings.db_url) as _session:
    KEY = create_key(_session, "fuzz", max_concurrent_jobs=1000, max_submissions_per_minute=100000).secret

schema = schemathesis.openapi.from_asgi("/openapi.json", app)


@schema.exclude(path="/v1/batches", method="POST").parametrize()
@settings(max_examples=25, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
def test_api_conforms_to_its_schema(case: schemathesis.Case) -> None:
    """Every operation but POST /v1/batches: a list of edits whose strategy alone takes this machine about
    10 s to build; its edits' fields are fuzzed at POST /v1/edits, its refusals tested in test_batches."""
    if case.path == "/v1/models":
        pytest.skip("needs a model set on disk; covered by the end-to-end tests")
    # Not checked: that every schema-valid body is accepted. Some rules span the JSON fields and the
    # multipart file parts (the video exactly once, emotion or speech), which a schema cannot say;
    # those requests get a documented 422 problem, which the other checks still validate.
    # /readyz answers a documented 503 while no worker runs (none does here)
    excluded = [positive_data_acceptance] + ([not_a_server_error] if case.path == "/readyz" else [])
    case.call_and_validate(headers={"Authorization": f"Bearer {KEY}"}, excluded_checks=excluded)
