"""`cmet serve` and `cmet keys`: the embedded single-machine service (SQLite, local files, filesystem broker)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx

from cmet_core.media.sample import write_sample_clip
from tests.service.stack import free_port, process, wait_until

CMET = str(Path(sys.executable).with_name("cmet"))


def _keys(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([CMET, "keys", *args], env=env, capture_output=True, text=True, timeout=120)


def test_serve_runs_a_whole_edit_with_no_servers(tmp_path: Path, tiny_set: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CMET_")} | {
        "CMET_DATA_DIR": str(tmp_path / "data"),
        "CMET_NUM_THREADS": "1",
    }
    made = _keys(env, "create", "--name", "me")
    assert made.returncode == 0, made.stderr
    secret = next(line.split()[-1] for line in made.stdout.splitlines() if line.startswith("key:"))
    key_id = next(line.split()[-1] for line in made.stdout.splitlines() if line.startswith("id:"))
    assert "cmet_" in secret and key_id in _keys(env, "list").stdout and secret not in _keys(env, "list").stdout

    port = free_port()
    clip = write_sample_clip(tmp_path / "talk.mp4", seconds=0.4)
    with process([CMET, "serve", "--port", str(port), "--models", str(tiny_set)], env, tmp_path / "serve.log") as proc:
        url = f"http://127.0.0.1:{port}"
        wait_until(lambda: httpx.get(url + "/healthz").status_code == 200, 90, "cmet serve", proc)
        auth = {"Authorization": f"Bearer {secret}"}
        with clip.open("rb") as f:
            r = httpx.post(
                url + "/v1/edits", headers=auth, files={"video": f}, data={"emotion": "sarcastic"}, timeout=60
            )
        assert r.status_code == 202, r.text
        job_id = r.json()["id"]
        deadline = time.monotonic() + 120
        while (job := httpx.get(f"{url}/v1/edits/{job_id}", headers=auth).json())["state"] not in (
            "succeeded",
            "failed",
        ) and time.monotonic() < deadline:
            time.sleep(0.3)
        assert job["state"] == "succeeded", (job, (tmp_path / "serve.log").read_text()[-3000:])
        download = httpx.get(job["output_url"], timeout=30)
        assert download.status_code == 200 and download.content[4:8] == b"ftyp"
        tampered = job["output_url"].replace("signature=", "signature=0")
        assert httpx.get(tampered).status_code == 403
        deadline = time.monotonic() + 30
        while (ready := httpx.get(url + "/readyz")).status_code != 200 and time.monotonic() < deadline:
            time.sleep(0.5)
        assert ready.json()["checks"]["broker"] == "ok" and ready.json()["checks"]["workers"] == "ok", ready.text

        # the embedded edit worker dies (kill -9): serve starts it again and the next edit runs
        (worker_pid,) = subprocess.run(
            ["pgrep", "-P", str(proc.pid), "-f", "cmet-edits@"], capture_output=True, text=True
        ).stdout.split()
        os.kill(int(worker_pid), 9)
        with clip.open("rb") as f:
            r = httpx.post(url + "/v1/edits", headers=auth, files={"video": f}, data={"emotion": "happy"}, timeout=60)
        deadline = time.monotonic() + 120
        while (job := httpx.get(f"{url}/v1/edits/{r.json()['id']}", headers=auth).json())["state"] not in (
            "succeeded",
            "failed",
        ) and time.monotonic() < deadline:
            time.sleep(0.3)
        assert job["state"] == "succeeded", (job, (tmp_path / "serve.log").read_text()[-3000:])
        assert "worker edits exited with -9; restarting" in (tmp_path / "serve.log").read_text()

    assert _keys(env, "revoke", key_id).returncode == 0
    assert _keys(env, "revoke", key_id).returncode == 2
