"""A refused request: what the API answers as problem+json and the CLI and worker report by its code."""

from __future__ import annotations

from typing import Any


class ProblemError(Exception):
    def __init__(self, status: int, code: str, detail: str, headers: dict[str, str] | None = None, errors: list[dict[str, Any]] | None = None) -> None:
        super().__init__(detail)
        self.status, self.code, self.detail, self.headers, self.errors = status, code, detail, headers, errors
