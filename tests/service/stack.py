"""Starts the real parts the service runs on, for tests: PostgreSQL database, moto S3 server, uvicorn, Celery
(an edit worker and a webhook worker).

Redis and PostgreSQL are the machine's own servers (127.0.0.1); each test run takes a fresh
PostgreSQL database, its own Redis database number and queue name, and a moto server on a free port.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from cmet_jobs.settings import JobsSettings

ROOT = Path(__file__).resolve().parents[2]
REDIS_DB = int(os.environ.get("CMET_TEST_REDIS_DB", "11"))
"""The local Redis database the test stacks use; parallel runs on one machine each set their own."""
REDIS_URL = f"redis://127.0.0.1:6379/{REDIS_DB}"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(check, timeout: float, what: str, proc: subprocess.Popen | None = None) -> None:  # type: ignore[no-untyped-def, type-arg]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{what} exited with code {proc.returncode}")
        try:
            if check():
                return
        except Exception:
            pass
        time.sleep(0.1)
    raise TimeoutError(f"{what} not ready after {timeout} s")


@contextmanager
def postgres_database() -> Iterator[str]:
    import psycopg

    name = f"cmet_test_{uuid.uuid4().hex[:10]}"
    admin = "host=127.0.0.1 port=5432 user=postgres dbname=postgres"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextmanager
def process(args: list[str], env: dict[str, str], log: Path) -> Iterator[subprocess.Popen]:  # type: ignore[type-arg]
    with log.open("wb") as out:
        proc = subprocess.Popen(args, env=env, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT, start_new_session=True)
        try:
            yield proc
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)  # the whole group: a `cmet serve` takes its worker along
                try:
                    proc.wait(20)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()


@contextmanager
def moto_s3(log: Path, host: str = "127.0.0.1", wrap: list[str] | None = None) -> Iterator[str]:
    """`wrap`: a command prefix it runs under (the multi-host test's `ip netns exec <infra host>`)."""
    port = free_port()
    server = [str(Path(sys.executable).with_name("moto_server")), "-H", host, "-p", str(port)]
    with process([*(wrap or []), *server], dict(os.environ), log) as proc:
        url = f"http://{host}:{port}"
        wait_until(lambda: httpx.get(url + "/moto-api/").status_code < 500, 30, "moto S3 server", proc)
        yield url


@dataclass
class Stack:
    env: dict[str, str]
    api_url: str
    logs: Path
    worker: subprocess.Popen | None = None  # type: ignore[type-arg]
    webhook_worker: subprocess.Popen | None = None  # type: ignore[type-arg]
    extra: dict[str, str] = field(default_factory=dict)
    api: subprocess.Popen | None = None  # type: ignore[type-arg]

    def settings(self) -> JobsSettings:
        """The stack's settings, as its processes read them from the environment."""
        found = {k.removeprefix("CMET_").lower(): v for k, v in self.env.items() if k.startswith("CMET_")}
        return JobsSettings(**found)

    def objects(self, prefix: str = "") -> list[str]:
        """Keys in the stack's S3 bucket (moto) under `prefix`."""
        import boto3

        s3 = boto3.client(
            "s3",
            endpoint_url=self.env["CMET_S3_ENDPOINT_URL"],
            aws_access_key_id="test",
            aws_secret_access_key="test",
            region_name="us-east-1",
        )
        listing = s3.list_objects_v2(Bucket=self.env["CMET_S3_BUCKET"], Prefix=prefix)
        return [o["Key"] for o in listing.get("Contents", [])]

    def _spawn(self, args: list[str], log_name: str, env: dict[str, str] | None = None) -> subprocess.Popen:  # type: ignore[type-arg]
        log = (self.logs / log_name).open("ab")
        return subprocess.Popen(
            args, env=env or self.env, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT, start_new_session=True
        )

    @staticmethod
    def _stop(proc: subprocess.Popen | None, sig: int) -> None:  # type: ignore[type-arg]
        """Signal the process group; one that outlives 30 s is killed."""
        if proc is None or proc.poll() is not None:
            return
        os.killpg(proc.pid, sig)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()

    def start_api(self) -> subprocess.Popen:  # type: ignore[type-arg]
        port = self.api_url.rsplit(":", 1)[-1]
        args = [sys.executable, "-m", "uvicorn", "service.app:app", "--host", "127.0.0.1", "--port", port]
        self.api = self._spawn([*args, "--log-level", "warning"], "api.log")
        wait_until(lambda: httpx.get(self.api_url + "/healthz").status_code == 200, 60, "API server", self.api)
        return self.api

    def stop_api(self, sig: int = 15) -> None:
        self._stop(self.api, sig)
        self.api = None

    def start_webhook_worker(self) -> subprocess.Popen:  # type: ignore[type-arg]
        """The deliveries' own worker, with the command `cmet worker --webhooks` runs."""
        from worker.devices import WEBHOOK_ENV, webhook_command

        args = [*webhook_command(self.env["CMET_WEBHOOK_QUEUE"], 4), "--without-gossip", "--without-mingle"]
        env = {**self.env, **WEBHOOK_ENV, "CMET_WORKER_METRICS_PORT": "0"}
        self.webhook_worker = self._spawn(args, "webhooks.log", env)
        return self.webhook_worker

    def start_worker(self) -> subprocess.Popen:  # type: ignore[type-arg]
        """One edit worker, built as `cmet worker` builds them (one job at a time, prefork, previews first)."""
        from worker.devices import celery_worker, job_queues

        queues = job_queues(self.env["CMET_QUEUE"], self.env["CMET_PREVIEW_QUEUE"])
        args = celery_worker(queues, 1, "prefork", "cmet-test")
        self.worker = self._spawn([*args, "--without-gossip", "--without-mingle", "--without-heartbeat"], "worker.log")
        return self.worker

    def stop_worker(self, sig: int = 15) -> None:
        self._stop(self.worker, sig)
        self.worker = None

    def stop_webhook_worker(self) -> None:
        self._stop(self.webhook_worker, signal.SIGTERM)
        self.webhook_worker = None


def moto_storage(endpoint: str, bucket: str = "cmet-test") -> dict[str, str]:
    """The settings that point a stack's processes at a moto S3 server."""
    return {
        "CMET_STORAGE": "s3",
        "CMET_S3_ENDPOINT_URL": endpoint,
        "CMET_S3_BUCKET": bucket,
        "CMET_S3_ACCESS_KEY_ID": "test",
        "CMET_S3_SECRET_ACCESS_KEY": "test",
    }


@contextmanager
def service_stack(tmp: Path, models: Path, broker_url: str | None = None) -> Iterator[Stack]:
    """A whole service on `models`: a database of its own, a moto S3 server, the API and the workers."""
    with postgres_database() as db, moto_s3(tmp / "moto.log") as s3:
        with running_stack(tmp, models, db, moto_storage(s3), broker_url) as running:
            running.extra["database_url"] = db
            yield running


@contextmanager
def running_stack(
    tmp: Path, models: Path, database_url: str, storage_env: dict[str, str], broker_url: str | None = None
) -> Iterator[Stack]:
    """`broker_url`: a private Redis (fault tests); default the machine's, in a database of its own."""
    if broker_url is None:
        import redis

        redis.Redis(host="127.0.0.1", port=6379, db=REDIS_DB).flushdb()
        broker_url = REDIS_URL
    port = free_port()
    queue = f"cmet-test-{uuid.uuid4().hex[:8]}"
    env = {
        **os.environ,
        "CMET_DATA_DIR": str(tmp / "data"),
        "CMET_DATABASE_URL": database_url,
        "CMET_BROKER_URL": broker_url,
        "CMET_QUEUE": queue,
        "CMET_WEBHOOK_QUEUE": f"{queue}-webhooks",
        "CMET_PREVIEW_QUEUE": f"{queue}-previews",
        "CMET_MODELS_SET": str(models),
        "CMET_PUBLIC_URL": f"http://127.0.0.1:{port}",
        "CMET_ALLOW_PRIVATE_URLS": "true",
        "CMET_NUM_THREADS": "1",
        "CMET_WORKER_METRICS_PORT": str(free_port()),
        "CMET_METRICS_TOKEN": uuid.uuid4().hex,
        **storage_env,
    }
    logs = tmp / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    stack = Stack(env=env, api_url=f"http://127.0.0.1:{port}", logs=logs)
    stack.start_api()
    try:
        stack.start_worker()
        stack.start_webhook_worker()
        yield stack
    finally:
        stack.stop_worker()
        stack.stop_webhook_worker()
        stack.stop_api()
