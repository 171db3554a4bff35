"""`openapi.yaml` is the contract: it must equal the schema the app generates."""

from __future__ import annotations

from service.openapi import ROOT_FILE, render


def test_openapi_yaml_is_current() -> None:
    assert ROOT_FILE.read_text() == render(), "openapi.yaml is stale: run `python -m service.openapi`"
