"""Each request's own origin for the URLs the local storage signs while answering it (decision 0026).

Without a public URL set, a page opened at http://localhost:8000/ (or a LAN name, or behind a proxy
that keeps the Host header) is handed upload and download URLs of that same origin; a fixed
127.0.0.1 there made the browser block every upload as cross-origin.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from starlette.requests import Request

from cmet_jobs.storage import request_origin
from service.body_limit import Receive, Scope, Send


class RequestOrigin:
    def __init__(self, app: Callable[[Scope, Receive, Send], Awaitable[None]]) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        with request_origin(str(Request(scope).base_url)):
            await self.app(scope, receive, send)
