"""Shared test fixtures: where the real data and the conformance kit live (settings, never copies)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from cmet_core.settings import get_settings

if TYPE_CHECKING:
    from tests.service.stack import Stack


@pytest.fixture(scope="session")
def test_data() -> Path:
    root = get_settings().test_data
    if not root.is_dir():
        pytest.skip(f"real fixtures not found at {root} (set CMET_TEST_DATA to the shared data folder)")
    return root


@pytest.fixture(scope="session")
def conformance_kit() -> Path:
    kit = get_settings().conformance_kit
    if not (kit / "golden_edtalk.npz").is_file():
        pytest.skip(f"conformance kit not found at {kit} (set CMET_CONFORMANCE_KIT)")
    return kit


@pytest.fixture(scope="session")
def tiny_set(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One tiny random model set (`cmet models make-tiny`) shared by the whole run."""
    from cmet_core.models.build import make_tiny_set

    return make_tiny_set(tmp_path_factory.mktemp("models") / "tiny", seed=0)


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory, tiny_set: Path) -> Iterator[Stack]:
    """The running service (PostgreSQL, Redis, moto S3, uvicorn, a Celery worker) shared by the run."""
    from tests.service.stack import moto_s3, postgres_database, running_stack

    tmp = tmp_path_factory.mktemp("stack")
    with postgres_database() as db, moto_s3(tmp / "moto.log") as s3:
        storage = {
            "CMET_STORAGE": "s3",
            "CMET_S3_ENDPOINT_URL": s3,
            "CMET_S3_BUCKET": "cmet-test",
            "CMET_S3_ACCESS_KEY_ID": "test",
            "CMET_S3_SECRET_ACCESS_KEY": "test",
        }
        with running_stack(tmp, tiny_set, db, storage) as running:
            running.extra["database_url"] = db
            yield running
