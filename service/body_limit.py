"""Request body limits counted as the bytes arrive, by route and content type.

A `Content-Length` check alone lets a chunked body (no length) or one that lies about its length
be spooled to disk or read into memory in full before anything refuses it. This ASGI middleware
refuses a declared length over the limit at once and stops any body the moment it passes the
limit, whatever the route does with it; the app answers 413 `body_too_large`.

Only the routes that take files get the file limits, and only for the content type that carries
files (multipart for submissions, the raw body of a signed upload); a JSON body, or anything else,
to any route gets `max_json_bytes` (about 1 MB), so it is never read whole past that.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from cmet_core.emotion.targets import MAX_SPEECH_CLIPS
from cmet_core.errors import ErrorCode
from cmet_jobs.settings import JobsSettings

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

FORM_FIELDS = 1 << 20  # room for the form fields beside the file parts of a multipart body


class BodyTooLarge(Exception):
    def __init__(self, limit: int) -> None:
        super().__init__(f"the request body is over {limit} bytes")
        self.limit = limit


def limit_for(settings: JobsSettings, method: str, path: str, content_type: str) -> int:
    """Bytes a request to this route with this content type may send."""
    route = path.rstrip("/")
    multipart = content_type.split(";")[0].strip().lower() == "multipart/form-data"
    if method == "POST" and route == "/v1/edits" and multipart:
        return settings.max_video_bytes + MAX_SPEECH_CLIPS * settings.max_speech_bytes + FORM_FIELDS
    if method == "POST" and route == "/v1/previews" and multipart:  # a contact sheet's one video part
        return settings.max_video_bytes + FORM_FIELDS
    if method == "POST" and route == "/v1/emotions" and multipart:
        return MAX_SPEECH_CLIPS * settings.max_speech_bytes + FORM_FIELDS
    if method == "PUT" and path.startswith("/v1/files/"):  # signed local uploads; each asset checks its own limit too
        return max(settings.max_video_bytes, settings.max_speech_bytes)
    return settings.max_json_bytes


class BodyLimit:
    def __init__(self, app: Callable[[Scope, Receive, Send], Awaitable[None]], settings: JobsSettings) -> None:
        self.app, self.settings = app, settings

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = limit_for(self.settings, scope["method"], scope["path"], _header(scope, b"content-type"))
        declared = _header(scope, b"content-length") or "0"
        if declared.isdigit() and int(declared) > limit:
            await _refuse(scope, send, limit)
            return
        received = 0

        async def counted() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge(limit)
            return message

        await self.app(scope, counted, send)


def _header(scope: Scope, name: bytes) -> str:
    """The first value of a header, as starlette's `request.headers` reads it (a second
    Content-Type must not choose the limit while the route reads the first)."""
    return next((v.decode("latin-1") for k, v in scope.get("headers") or [] if k == name), "")


def too_large_response(limit: int) -> Any:
    """The one answer to a body over its limit, whichever layer noticed it."""
    from service.problems import problem_response  # cycle: body_limit <-> problems

    return problem_response(ErrorCode.BODY_TOO_LARGE, str(BodyTooLarge(limit)), {"Connection": "close"})


async def _refuse(scope: Scope, send: Send, limit: int) -> None:
    await too_large_response(limit)(scope, _no_body, send)


async def _no_body() -> Message:
    return {"type": "http.disconnect"}
