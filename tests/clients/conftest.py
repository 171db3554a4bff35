"""One `cmet serve` on tiny models for every client test (the Python SDK, the TypeScript client, `cmet
--server`), with a key and its webhook secret, and private URLs allowed so a local receiver gets webhooks."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from cmet_core.media.sample import write_sample_clip
from tests.service.local_serve import create_key, running_serve, serve_env


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
    env = serve_env(tmp / "data", CMET_ALLOW_PRIVATE_URLS="true")
    made = create_key(env, "client")
    clip = write_sample_clip(tmp / "talk.mp4", seconds=0.4)
    log = tmp / "serve.log"
    with running_serve(env, tiny_set, log) as (url, _):
        yield Served(url, made["key"], made["webhook secret"], clip, env, log)
