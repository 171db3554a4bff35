"""HEAD wherever GET is served (RFC 9110 asks for it; FastAPI's routes answer only the methods
they declare, unlike starlette's plain routes).

The request runs as a GET on a copy of the scope and the body is dropped, so status and headers
(Content-Length too) are the GET's own. The server keeps its scope's HEAD, so it sends no body
either. Paths without GET answer HEAD with their 405 as before.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from service.body_limit import Message, Receive, Scope, Send


class HeadAsGet:
    def __init__(self, app: Callable[[Scope, Receive, Send], Awaitable[None]]) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "HEAD":
            await self.app(scope, receive, send)
            return
        inner = {**scope, "method": "GET"}

        async def headers_only(message: Message) -> None:
            if message["type"] == "http.response.body":
                if message.get("more_body", False):
                    return
                message = {"type": "http.response.body", "body": b"", "more_body": False}
            await send(message)

        try:
            await self.app(inner, receive, headers_only)
        finally:
            if "route" in inner:  # the metrics label the request by the route it reached
                scope["route"] = inner["route"]
