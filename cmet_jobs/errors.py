"""A refused request: the API answers it as problem+json with its code's HTTP status.

The domain functions (`cmet_jobs.submissions`, `uploads`, `emotions`) raise it without knowing HTTP;
the code comes from the one catalogue, `cmet_core.errors.ErrorCode`.
"""

from __future__ import annotations

from typing import Any

from cmet_core.errors import ErrorCode

OUTAGE_RETRY_AFTER_S = 5
"""How long a client (Retry-After) or a task (its retry) waits when the database or the broker is away."""


class RequestError(Exception):
    """`code` says what is wrong (and gives the status), `detail` what to change; `headers` such as Retry-After."""

    def __init__(
        self,
        code: ErrorCode,
        detail: str,
        headers: dict[str, str] | None = None,
        errors: list[dict[str, Any]] | None = None,
    ) -> None:
        super().__init__(detail)
        self.code, self.detail, self.headers, self.errors = code, detail, headers, errors

    @property
    def status(self) -> int:
        return self.code.status
