"""Shared test fixtures: where the real data and the conformance kit live (settings, never copies)."""

from __future__ import annotations

import functools
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from cmet_core.settings import get_settings
from tests.needs import missing, needed

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
    from cmet_core.modelsets.build import make_tiny_set

    return make_tiny_set(tmp_path_factory.mktemp("models") / "tiny", seed=0)


@pytest.fixture(scope="session")
def tiny_pdfgc_set(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny PD-FGC set (`cmet models make-tiny --backbone pdfgc`) with its 30-wide connector and no
    Audio2Lip (its lips come from its own audio encoder); no restorer, to make it quickly."""
    from cmet_core.modelsets.build import make_tiny_set

    return make_tiny_set(tmp_path_factory.mktemp("models") / "tiny-pdfgc", seed=0, restorer=False, backbone="pdfgc")


@pytest.fixture(scope="session")
def bare_pdfgc_set(tiny_pdfgc_set: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny PD-FGC set without its connector, as `cmet models convert` makes one before any training: links
    to the tiny set's files and a manifest without the connector."""
    import json  # deferred: only the PD-FGC tests need it

    from cmet_core.modelsets.manifests import SET_MANIFEST

    bare = tmp_path_factory.mktemp("models") / "bare-pdfgc"
    bare.mkdir()
    for path in tiny_pdfgc_set.iterdir():
        if path.name != SET_MANIFEST and not path.name.startswith("connector."):
            (bare / path.name).symlink_to(path)
    manifest = json.loads((tiny_pdfgc_set / SET_MANIFEST).read_text())
    manifest["models"].pop("connector")
    (bare / SET_MANIFEST).write_text(json.dumps(manifest))
    return bare


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory, tiny_set: Path) -> Iterator[Stack]:
    """The running service (PostgreSQL, Redis, moto S3, uvicorn, a Celery worker) shared by the run."""
    from tests.service.stack import service_stack

    with service_stack(tmp_path_factory.mktemp("stack"), tiny_set) as running:
        yield running


@functools.cache
def _missing(needs: frozenset[str]) -> str | None:
    """Checked once per run and set of needs: the servers are up for the whole run or not at all."""
    return missing(needs)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """A test that uses the running stack needs PostgreSQL and Redis, whichever fixture brought it in."""
    for item in items:
        if "stack" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.stack)


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    """Skip, naming what is missing, before any fixture tries to reach it."""
    needs = needed([m.args for m in item.iter_markers("stack")], item.get_closest_marker("browser") is not None)
    reason = _missing(needs) if needs else None
    if reason is not None:
        pytest.skip(reason)
