"""One `cmet serve` on tiny models for every client test (the Python SDK, the TypeScript client, `cmet
--server`), with a key and its webhook secret, and private URLs allowed so a local receiver gets webhooks."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from cmet_core.media.sample import write_sample_clip
from tests.service.stack import free_port, process, wait_until
from tests.service.test_serve import CMET, _keys


@dataclass(frozen=True)
class Served:
    url: str
    key: str
    webhook_secret: str
    clip: Path
    env: dict[str, str]
    log: Path


@pytest.fixture(scope="package")
def served(tmp_path_factory: pytest.TempPathFactory, tiny_set: Path) -> Iterator[Served]:
    tmp = tmp_path_factory.mktemp("clients")
    env = {k: v for k, v in os.environ.items() if not k.startswith("CMET_")} | {
        "CMET_DATA_DIR": str(tmp / "data"),
        "CMET_NUM_THREADS": "1",
        "CMET_ALLOW_PRIVATE_URLS": "true",
    }
    made = _keys(env, "create", "--name", "client")
    assert made.returncode == 0, made.stderr
    lines = {k.strip(): v.strip() for k, v in (line.split(":", 1) for line in made.stdout.splitlines() if ":" in line)}
    clip = write_sample_clip(tmp / "talk.mp4", seconds=0.4)
    port = free_port()
    log = tmp / "serve.log"
    with process([CMET, "serve", "--port", str(port), "--models", str(tiny_set)], env, log) as proc:
        url = f"http://127.0.0.1:{port}"
        wait_until(lambda: httpx.get(url + "/healthz").status_code == 200, 90, "cmet serve", proc)
        yield Served(url, lines["key"], lines["webhook secret"], clip, env, log)
