"""The one catalogue of error codes: complete, and what the README and the OpenAPI contract list."""

from __future__ import annotations

from pathlib import Path

import yaml

from cmet_core.errors import ErrorCode, InputError, catalogue_table

ROOT = Path(__file__).resolve().parents[2]


def test_every_code_has_a_status_and_a_meaning() -> None:
    for code in ErrorCode:
        assert 400 <= code.status < 600 and code.meaning, code
        assert code.users_fault == (code.status < 500)
    assert ErrorCode("no_face") is ErrorCode.NO_FACE and ErrorCode.NO_FACE == "no_face"


def test_input_errors_carry_a_catalogued_code() -> None:
    exc = InputError(ErrorCode.TOO_LONG, "too long")
    assert exc.code.status == 422 and str(exc) == "too long"


def test_the_readme_lists_the_catalogue() -> None:
    assert catalogue_table() in (ROOT / "README.md").read_text(), (
        "README's error table is stale: python -m cmet_core.errors"
    )


def test_the_contract_lists_every_code() -> None:
    schema = yaml.safe_load((ROOT / "openapi.yaml").read_text())["components"]["schemas"]["ErrorCode"]
    assert schema["enum"] == [code.value for code in ErrorCode]
    assert "| `rate_limit` | 429 |" in schema["description"]
