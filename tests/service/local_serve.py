"""`cmet serve` as the tests start it: an environment of its own (no `CMET_` setting of the caller's), keys made
by `cmet keys`, and the server on a free port until the block ends."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from tests.service.stack import free_port, process, wait_until

CMET = str(Path(sys.executable).with_name("cmet"))


def serve_env(data_dir: Path, **settings: str) -> dict[str, str]:
    """The caller's environment less its `CMET_` settings, with a data folder and one thread, plus `settings`."""
    return {k: v for k, v in os.environ.items() if not k.startswith("CMET_")} | {
        "CMET_DATA_DIR": str(data_dir),
        "CMET_NUM_THREADS": "1",
        **settings,
    }


def cmet_keys(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([CMET, "keys", *args], env=env, capture_output=True, text=True, timeout=120)


def create_key(env: dict[str, str], name: str) -> dict[str, str]:
    """`cmet keys create`'s printed fields (`key`, `webhook secret`, ...) by their labels."""
    made = cmet_keys(env, "create", "--name", name)
    assert made.returncode == 0, made.stderr
    return {k.strip(): v.strip() for k, v in (line.split(":", 1) for line in made.stdout.splitlines() if ":" in line)}


@contextmanager
def running_serve(env: dict[str, str], models: Path, log: Path) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """`cmet serve` on a free port, answering `/healthz`: its URL and process."""
    port = free_port()
    with process([CMET, "serve", "--port", str(port), "--models", str(models)], env, log) as proc:
        url = f"http://127.0.0.1:{port}"
        wait_until(lambda: httpx.get(url + "/healthz").status_code == 200, 90, "cmet serve", proc)
        yield url, proc
