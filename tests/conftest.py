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
