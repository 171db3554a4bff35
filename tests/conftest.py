"""Shared test fixtures: where the real data and the conformance kit live (settings, never copies)."""

from __future__ import annotations

from pathlib import Path

import pytest

from cmet_core.settings import get_settings


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
    from cmet_core.models.registry import make_tiny_set

    return make_tiny_set(tmp_path_factory.mktemp("models") / "tiny", seed=0)
