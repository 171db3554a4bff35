"""Private Redis and PostgreSQL servers for fault tests: each on a free port, in a temp folder, stopped
and started (or killed) by the test; the machine's own servers are never touched. And a plain HTTP
server for a test's own handler (a slow or dripping URL).

Both listen on 127.0.0.1 unless given another `host`, and run under `wrap` when given one (a command
prefix: the multi-host test starts them with `ip netns exec <its infra host>` on that host's address).

PostgreSQL refuses to run as root, so its cluster belongs to the `postgres` user when the tests
run as root (as CI does).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.service.stack import free_port, wait_until


def _pg_bin() -> Path | None:
    """Debian's server binaries (the PATH may hold only wrappers), else whatever pg_ctl is on the PATH."""
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"))
    if versions:
        return versions[-1].parent
    found = shutil.which("pg_ctl")
    return Path(found).parent if found else None


@dataclass
class PrivateRedis:
    """redis-server with an append-only file, so a SIGKILL loses nothing that was acknowledged."""

    folder: Path
    port: int
    proc: subprocess.Popen[bytes] | None = None
    host: str = "127.0.0.1"
    wrap: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}/0"

    def start(self) -> None:
        args = [*self.wrap, "redis-server", "--port", str(self.port), "--bind", self.host, "--dir", str(self.folder)]
        args += ["--appendonly", "yes", "--appendfsync", "always", "--save", "", "--protected-mode", "no"]
        with (self.folder / "redis.log").open("ab") as log:
            self.proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        import redis

        wait_until(lambda: redis.Redis(self.host, self.port).ping(), 20, "private redis-server", self.proc)

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)
        self.proc = None


@contextmanager
def private_redis(folder: Path, host: str = "127.0.0.1", wrap: list[str] | None = None) -> Iterator[PrivateRedis]:
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed")
    folder.mkdir(parents=True, exist_ok=True)
    server = PrivateRedis(folder, free_port(), host=host, wrap=wrap or [])
    server.start()
    try:
        yield server
    finally:
        if server.proc is not None:
            server.kill()


@dataclass
class PrivatePostgres:
    """A cluster made with initdb, started and stopped with pg_ctl (a fast shutdown ends every session)."""

    folder: Path
    port: int
    bin: Path
    host: str = "127.0.0.1"
    wrap: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@{self.host}:{self.port}/postgres"

    def _run(self, *args: str) -> None:
        command = [str(self.bin / args[0]), *args[1:]]
        if os.geteuid() == 0:
            command = ["runuser", "-u", "postgres", "--", *command]
        subprocess.run([*self.wrap, *command], check=True, capture_output=True, timeout=60)

    def start(self) -> None:
        options = f"-p {self.port} -k {self.folder} -c listen_addresses={self.host} -c fsync=off"
        self._run(
            "pg_ctl", "-D", str(self.folder / "data"), "-l", str(self.folder / "pg.log"), "-o", options, "-w", "start"
        )

    def stop(self) -> None:
        self._run("pg_ctl", "-D", str(self.folder / "data"), "-m", "fast", "-w", "stop")


@contextmanager
def private_postgres(host: str = "127.0.0.1", wrap: list[str] | None = None) -> Iterator[PrivatePostgres]:
    """In a folder of its own under the system temp dir: pytest's are private to root, and the
    server runs as `postgres`."""
    pg_bin = _pg_bin()
    if pg_bin is None:
        pytest.skip("PostgreSQL's server binaries (initdb, pg_ctl) are not installed")
    folder = Path(tempfile.mkdtemp(prefix="cmet-pg-"))
    if os.geteuid() == 0:
        shutil.chown(folder, "postgres")
    server = PrivatePostgres(folder, free_port(), pg_bin, host, wrap or [])
    server._run("initdb", "-D", str(folder / "data"), "-A", "trust", "-U", "postgres")
    if host != "127.0.0.1":  # initdb lets in only the loopback; other hosts come from the server's own subnet
        with (folder / "data" / "pg_hba.conf").open("a") as hba:
            hba.write("host all all samenet trust\n")
    server.start()
    try:
        yield server
    finally:
        try:
            server.stop()
        except subprocess.CalledProcessError:
            pass  # already stopped by the test
        shutil.rmtree(folder, ignore_errors=True)


def wait_for(check: object, timeout: float) -> float:
    """Seconds until `check()` is true (it may raise meanwhile)."""
    started = time.monotonic()
    wait_until(check, timeout, "recovery")
    return time.monotonic() - started


@contextmanager
def http_server(handler: type[BaseHTTPRequestHandler]) -> Iterator[str]:
    """`handler` served on a free port of 127.0.0.1, a thread per request; its base URL."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
