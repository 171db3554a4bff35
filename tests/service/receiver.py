"""A local webhook receiver for tests: records every call, verifies its Standard Webhooks signature,
and answers with the statuses a test scripts (then 200)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from cmet_jobs.webhook_signing import WebhookVerificationError, verify


@dataclass
class Call:
    headers: dict[str, str]
    body: dict[str, Any]
    verified: bool
    answered: int
    raw: bytes = b""


@dataclass
class Receiver:
    secret: str
    url: str = ""
    script: list[int] = field(default_factory=list)
    calls: list[Call] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def events(self, status: int = 200) -> list[str]:
        with self.lock:
            return [c.body["type"] for c in self.calls if c.answered == status]


@contextmanager
def webhook_receiver(secret: str, port: int = 0) -> Iterator[Receiver]:
    """A receiver that verifies signatures; `port` 0 picks a free one (a fixed one brings a receiver back up)."""
    receiver = Receiver(secret)

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 (http.server's name)
            raw = self.rfile.read(int(self.headers.get("content-length", 0)))
            headers = {k.lower(): v for k, v in self.headers.items()}
            try:
                verify(receiver.secret, headers, raw)
                verified = True
            except WebhookVerificationError:
                verified = False
            with receiver.lock:
                status = receiver.script.pop(0) if receiver.script else 200
                receiver.calls.append(Call(headers, json.loads(raw), verified, status, raw))
            self.send_response(status)
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    receiver.url = f"http://127.0.0.1:{server.server_address[1]}/hook"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()


@dataclass
class SlowReceiver:
    url: str = ""
    calls: int = 0
    stopped: threading.Event = field(default_factory=threading.Event)


@contextmanager
def slow_receiver(every_s: float = 2.0, for_s: float = 60.0) -> Iterator[SlowReceiver]:
    """A receiver that answers 200 at once, then trickles its declared body one byte every `every_s`
    seconds (for at most `for_s`): never idle long enough for a per-read timeout."""
    receiver = SlowReceiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 (http.server's name)
            self.rfile.read(int(self.headers.get("content-length", 0)))
            receiver.calls += 1  # one int, read by the test only to wait for the first call
            self.send_response(200)
            self.send_header("content-length", "1000")
            self.end_headers()
            for _ in range(int(for_s / every_s)):
                try:
                    self.wfile.write(b" ")
                    self.wfile.flush()
                except OSError:  # the caller gave up
                    return
                if receiver.stopped.wait(every_s):
                    return

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    receiver.url = f"http://127.0.0.1:{server.server_address[1]}/hook"
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield receiver
    finally:
        receiver.stopped.set()
        server.shutdown()
        server.server_close()
