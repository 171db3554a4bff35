"""RFC 9457 problem details: every error the API returns has a stable machine-readable `code`."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ValidationError
from sqlalchemy.exc import OperationalError
from sqlalchemy.exc import TimeoutError as SATimeoutError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect
from starlette.routing import Match

from cmet_core.errors import ErrorCode
from cmet_jobs.errors import OUTAGE_RETRY_AFTER_S, RequestError
from service.body_limit import BodyTooLarge, too_large_response

log = logging.getLogger("cmet.api")

PROBLEM_TYPE = "about:blank"
"""RFC 9457's type for problems without a page of their own: `code` is what to branch on (the README's
table, `ErrorCode`), not a URL of a domain the project does not own."""


class Problem(BaseModel):
    type: str
    title: str
    status: int
    code: str
    detail: str
    errors: list[dict[str, Any]] | None = None


_TITLES = {
    400: "Bad request",
    401: "Unauthorized",
    404: "Not found",
    405: "Method not allowed",
    409: "Conflict",
    413: "Too large",
    415: "Unsupported media type",
    422: "Unprocessable content",
    429: "Too many requests",
    500: "Internal error",
    503: "Unavailable",
}


def problem_response(
    code: ErrorCode,
    detail: str,
    headers: dict[str, str] | None = None,
    errors: list[dict[str, Any]] | None = None,
    status: int | None = None,
) -> JSONResponse:
    """`status` overrides the code's own only for errors raised by the framework (`http_error`)."""
    status = code.status if status is None else status
    body = Problem(
        type=PROBLEM_TYPE,
        title=_TITLES.get(status, "Error"),
        status=status,
        code=code,
        detail=detail,
        errors=errors,
    )
    return JSONResponse(
        body.model_dump(exclude_none=True), status_code=status, headers=headers, media_type="application/problem+json"
    )


CLIENT_GONE = 499
"""Status recorded (metrics, access log) for a request whose client left before its body was in;
nobody receives it (nginx's convention)."""


def _client_gone(request: Request) -> Response:
    """An abandoned upload is a normal event: one info line, no traceback, nothing to answer."""
    log.info("client left during %s %s before its body was in", request.method, request.url.path)
    return Response(status_code=CLIENT_GONE)


_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


def _allowed_methods(request: Request) -> set[str]:
    """Every method some route answers on this path: each is tried against the app's routes, so
    included routers (which expose no `methods` of their own) count too; HEAD goes with GET."""
    routes = request.app.routes
    allowed = {m for m in _METHODS if any(r.matches({**request.scope, "method": m})[0] == Match.FULL for r in routes)}
    return allowed | ({"HEAD"} if "GET" in allowed else set())


def invalid_request(exc: ValidationError) -> RequestError:
    """A body that parsed but failed its model (multipart fields, or JSON checked in the route), as the same
    422 `invalid_request` with per-field `errors` that FastAPI's own validation gives."""
    errors = [{"loc": list(e["loc"]), "msg": e["msg"]} for e in exc.errors()]
    detail = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'body'}: {e['msg']}" for e in errors)
    return RequestError(ErrorCode.INVALID_REQUEST, detail, errors=errors)


def install(app: FastAPI) -> None:
    @app.exception_handler(RequestError)
    async def _problem(request: Request, exc: RequestError) -> JSONResponse:
        why = {"code": exc.code.value, "status": exc.status}
        log.info("refused %s %s: %s %s", request.method, request.url.path, exc.status, exc.code.value, extra=why)
        return problem_response(exc.code, exc.detail, exc.headers, exc.errors)

    @app.exception_handler(OperationalError)
    @app.exception_handler(SATimeoutError)
    async def _database_down(request: Request, exc: Exception) -> JSONResponse:
        log.warning("database unavailable on %s %s: %s", request.method, request.url.path, exc)
        code = ErrorCode.DATABASE_UNAVAILABLE
        return problem_response(code, "the job database cannot be reached", {"Retry-After": str(OUTAGE_RETRY_AFTER_S)})

    @app.exception_handler(BodyTooLarge)
    async def _too_large(_: Request, exc: BodyTooLarge) -> JSONResponse:
        return too_large_response(exc.limit)

    @app.exception_handler(ClientDisconnect)
    async def _gone(request: Request, _: ClientDisconnect) -> Response:
        return _client_gone(request)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [{"loc": list(e.get("loc", ())), "msg": str(e.get("msg", ""))} for e in exc.errors()]
        detail = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in errors)
        why = {"code": ErrorCode.INVALID_REQUEST.value, "status": ErrorCode.INVALID_REQUEST.status}
        log.info("refused %s %s: 422 invalid_request (%s)", request.method, request.url.path, detail, extra=why)
        return problem_response(ErrorCode.INVALID_REQUEST, detail or "invalid request", errors=errors)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> Response:
        if exc.status_code == 400 and isinstance(
            exc.__cause__, BodyTooLarge
        ):  # FastAPI wraps errors while reading a JSON body
            return too_large_response(exc.__cause__.limit)
        if exc.status_code == 400 and isinstance(exc.__cause__, ClientDisconnect):
            return _client_gone(request)
        if exc.status_code == 400:  # an unparseable body: the same answer as any other invalid request
            return problem_response(ErrorCode.INVALID_REQUEST, str(exc.detail))
        headers = dict(getattr(exc, "headers", None) or {})
        if exc.status_code == 405:
            headers["Allow"] = ", ".join(sorted(_allowed_methods(request)))
        code = {404: ErrorCode.NOT_FOUND, 405: ErrorCode.METHOD_NOT_ALLOWED}.get(exc.status_code, ErrorCode.HTTP_ERROR)
        return problem_response(code, str(exc.detail), headers, status=exc.status_code)

    @app.exception_handler(Exception)
    async def _crash(request: Request, exc: Exception) -> JSONResponse:
        log.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
        return problem_response(ErrorCode.INTERNAL, f"unexpected {type(exc).__name__}; the error was logged")
