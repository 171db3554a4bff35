"""The API alone, as `cmet serve` runs it (SQLite, local storage, filesystem broker), with no worker:
every 2xx is durable and visible to the very next request, and reads stay fast while submissions work."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from cmet_core.media.sample import write_sample_clip
from cmet_jobs.db.session import session_scope
from cmet_jobs.keys import create_key
from cmet_jobs.settings import JobsSettings
from tests.service.stack import free_port, process, wait_until

CLIENTS = 4
ROUNDS = 30  # per client: 120 rounds of each race, every one must hold


@dataclass
class Api:
    url: str
    settings: JobsSettings
    log: Path

    def key(self, name: str) -> str:
        with session_scope(self.settings.db_url) as session:
            return create_key(session, name, max_concurrent_jobs=1000, max_submissions_per_minute=10_000).secret

    def client(self, secret: str, timeout: float = 60) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers={"Authorization": f"Bearer {secret}"}, timeout=timeout)


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    tmp = tmp_path_factory.mktemp("api")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CMET_")} | {
        "CMET_DATA_DIR": str(tmp / "data"),
        "CMET_BROKER_URL": "filesystem://",
        "CMET_PUBLIC_URL": f"http://127.0.0.1:{port}",
    }
    args = [sys.executable, "-m", "uvicorn", "service.app:app", "--port", str(port), "--log-level", "warning"]
    with process(args, env, tmp / "api.log") as proc:
        url = f"http://127.0.0.1:{port}"
        wait_until(lambda: httpx.get(url + "/healthz").status_code == 200, 60, "API server", proc)
        yield Api(url, JobsSettings(data_dir=tmp / "data"), tmp / "api.log")


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    return write_sample_clip(tmp_path_factory.mktemp("clips") / "talk.mp4", seconds=0.2).read_bytes()


def _in_parallel(api: Api, one_round: Callable[[httpx.Client], list[str]]) -> list[str]:
    """CLIENTS clients, each running ROUNDS rounds back to back on its own keep-alive connection."""
    secret = api.key("race")

    def client_rounds(_: int) -> list[str]:
        with api.client(secret) as client:
            return [problem for _ in range(ROUNDS) for problem in one_round(client)]

    with ThreadPoolExecutor(CLIENTS) as pool:
        return [p for problems in pool.map(client_rounds, range(CLIENTS)) for p in problems]


def test_an_upload_url_works_the_moment_it_is_handed_out(api: Api, clip: bytes) -> None:
    def one_round(client: httpx.Client) -> list[str]:
        made = client.post("/v1/uploads", json={"kind": "video", "filename": "talk.mp4"})
        assert made.status_code == 201, made.text
        put = client.put(made.json()["upload_url"], content=clip)
        return [] if put.status_code == 200 else [f"PUT right after POST /v1/uploads: {put.status_code} {put.text}"]

    assert _in_parallel(api, one_round) == []


def test_cancel_and_delete_are_seen_by_the_next_request(api: Api, clip: bytes) -> None:
    def one_round(client: httpx.Client) -> list[str]:
        made = client.post("/v1/edits", files={"video": ("talk.mp4", clip)}, data={"emotion": "happy"})
        assert made.status_code == 202, made.text
        job_id = made.json()["id"]
        problems = []
        if (seen := client.get(f"/v1/edits/{job_id}")).status_code != 200:
            problems.append(f"GET right after POST: {seen.status_code}")
        assert client.post(f"/v1/edits/{job_id}/cancel").json()["state"] == "canceled"  # no worker: still queued
        if (seen := client.get(f"/v1/edits/{job_id}")).json().get("state") != "canceled":
            problems.append(f"GET right after cancel: {seen.text}")
        assert client.delete(f"/v1/edits/{job_id}").status_code == 204
        if (seen := client.get(f"/v1/edits/{job_id}")).status_code != 404:
            problems.append(f"GET right after DELETE: {seen.status_code} {seen.text}")
        return problems

    assert _in_parallel(api, one_round) == []
