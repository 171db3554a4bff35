"""What the client raises: every error is a `CmetError`; the server's refusals carry its problem `code`."""

from __future__ import annotations

import json
from typing import Any

import httpx


class CmetError(Exception):
    """Base of every error this package raises."""


class ApiError(CmetError):
    """The server answered with a problem (RFC 9457): `code` is its machine-readable `ErrorCode` value."""

    def __init__(self, status: int, code: str, detail: str, problem: dict[str, Any] | None = None) -> None:
        super().__init__(f"[{code}] {detail} (HTTP {status})")
        self.status, self.code, self.detail = status, code, detail
        self.problem = problem or {}

    @classmethod
    def of(cls, response: httpx.Response) -> ApiError:
        """The problem in an error response; a body that is no problem (a proxy's page) gets `http_error`."""
        try:
            body = response.json()
        except ValueError:
            body = None
        if isinstance(body, dict) and isinstance(body.get("code"), str):
            return cls(response.status_code, body["code"], str(body.get("detail", "")), body)
        return cls(response.status_code, "http_error", response.text[:200] or response.reason_phrase)

    @classmethod
    def of_event(cls, data: str) -> ApiError:
        """The problem in an event stream's `error` event (the job was deleted while followed)."""
        body = json.loads(data)
        return cls(404, str(body.get("code", "http_error")), str(body.get("detail", "")), body)


class InvalidRequestError(CmetError, ValueError):
    """A request the contract's model refuses, caught before it is sent (`code` as the server would say)."""

    code = "invalid_request"


class JobFailedError(CmetError):
    """A job ended in `failed` or `canceled`; `code` is the job's error code (`canceled` when canceled)."""

    def __init__(self, job_id: str, state: str, code: str, message: str) -> None:
        super().__init__(f"{job_id} {state}: [{code}] {message}")
        self.job_id, self.state, self.code, self.message = job_id, state, code, message


class WaitTimeoutError(CmetError):
    """`wait(timeout=...)` ran out before the job ended (the job goes on)."""


class WebhookVerificationError(CmetError):
    """A webhook request is not a fresh delivery signed with the secret."""
