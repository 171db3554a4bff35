"""HEAD wherever GET is served (RFC 9110 asks for it; FastAPI's routes answer only the methods
they declare, unlike starlette's plain routes).

The request runs as a GET on a copy of the scope and the body is dropped, so status and headers
(Content-Length too) are the GET's own. The server keeps its scope's HEAD, so it sends no body
either. The answer ends at the GET's first body chunk, and the GET then hears a disconnect: a
stream (a running job's events) stops there instead of holding the connection until the job ends.
Paths without GET answer HEAD with their 405 as before.
"""

from __future__ import annotations

import asyncio
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
        ended = asyncio.Event()

        async def headers_only(message: Message) -> None:
            if message["type"] == "http.response.body":
                if ended.is_set():
                    return
                ended.set()  # a stream (a job's events) is cut at its first chunk: a HEAD waits for no body
                message = {"type": "http.response.body", "body": b"", "more_body": False}
            await send(message)

        async def until_ended() -> Message:
            """The client's messages until the answer is complete, then a disconnect, which ends a stream."""
            if not ended.is_set():
                message = asyncio.ensure_future(receive())
                done = asyncio.ensure_future(ended.wait())
                await asyncio.wait({message, done}, return_when=asyncio.FIRST_COMPLETED)
                done.cancel()
                if message.done():
                    return message.result()
                message.cancel()
            return {"type": "http.disconnect"}

        try:
            await self.app(inner, until_ended, headers_only)
        finally:
            if "route" in inner:  # the metrics label the request by the route it reached
                scope["route"] = inner["route"]
