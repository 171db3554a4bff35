"""`cmet serve` and `cmet keys`: the embedded single-machine service (SQLite, local files, filesystem broker)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from pathlib import Path

import httpx

from cmet_core.media.sample import write_sample_clip
from tests.service.local_serve import CMET, cmet_keys, create_key, running_serve, serve_env
from tests.service.stack import free_port, process, wait_until


def _final(url: str, auth: dict[str, str], job_id: str, timeout: float) -> dict:  # type: ignore[type-arg]
    deadline = time.monotonic() + timeout
    while (job := httpx.get(f"{url}/v1/edits/{job_id}", headers=auth).json())["state"] not in (
        "succeeded",
        "failed",
    ) and time.monotonic() < deadline:
        time.sleep(0.3)
    return job  # type: ignore[no-any-return]


def test_serve_runs_a_whole_edit_with_no_servers(tmp_path: Path, tiny_set: Path) -> None:
    env = serve_env(tmp_path / "data")
    clip = write_sample_clip(tmp_path / "talk.mp4", seconds=0.4)
    log = tmp_path / "serve.log"
    with running_serve(env, tiny_set, log) as (url, proc):
        # a first run: no key yet, so serve makes one and prints it on the line that says where to go
        (opened,) = [line for line in log.read_text().splitlines() if line.startswith("open ")]
        secret = re.search(r"key: (cmet_\S+)", opened).group(1)  # type: ignore[union-attr]
        auth = {"Authorization": f"Bearer {secret}"}
        with clip.open("rb") as f:
            r = httpx.post(
                url + "/v1/edits", headers=auth, files={"video": f}, data={"emotion": "sarcastic"}, timeout=60
            )
        assert r.status_code == 202, r.text
        job_id = r.json()["id"]
        job = _final(url, auth, job_id, 120)
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
        job = _final(url, auth, r.json()["id"], 120)
        assert job["state"] == "succeeded", (job, (tmp_path / "serve.log").read_text()[-3000:])
        assert "worker edits exited with -9; restarting" in (tmp_path / "serve.log").read_text()

    said = "\n".join(line for line in log.read_text().splitlines() if "Warm shutdown" not in line and line.strip())
    assert len(said.splitlines()) <= 12, said  # a short summary: no migrations, banners, access lines or warnings
    for noise in ("alembic", "-------------- ", "SecurityWarning", "No hostname", "INFO"):
        assert noise not in said, (noise, said)
    made = cmet_keys(env, "create", "--name", "me")
    assert made.returncode == 0, made.stderr
    secret = next(line.split()[-1] for line in made.stdout.splitlines() if line.startswith("key:"))
    key_id = next(line.split()[-1] for line in made.stdout.splitlines() if line.startswith("id:"))
    assert "cmet_" in secret and key_id in cmet_keys(env, "list").stdout and secret not in cmet_keys(env, "list").stdout
    assert cmet_keys(env, "revoke", key_id).returncode == 0
    assert cmet_keys(env, "revoke", key_id).returncode == 2


def _descendants(pid: int) -> list[int]:
    found, todo = [], [pid]
    while todo:
        listed = subprocess.run(["pgrep", "-P", str(todo.pop())], capture_output=True, text=True).stdout
        children = [int(p) for p in listed.split()]
        found += children
        todo += children
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != "Z"


def _job_record(data: Path, job_id: str) -> tuple[str, int]:
    from cmet_jobs.db.models import JobRow
    from cmet_jobs.db.session import session_scope

    with session_scope(f"sqlite:///{data / 'cmet.db'}") as session:
        job = session.get(JobRow, job_id)
        assert job is not None
        return str(job.state), job.attempts


def test_sigterm_stops_serve_in_time_and_hands_the_running_job_back(tmp_path: Path, tiny_set: Path) -> None:
    """`docker stop` sends SIGTERM and waits 10 s: serve exits 0 well within that, leaves no process
    behind, and the edit it was running goes back to the queue (its attempt not counted) and is
    finished by the next start; its webhook then arrives through serve's webhook worker."""
    from tests.service.receiver import webhook_receiver

    data = tmp_path / "data"
    env = serve_env(data, CMET_ALLOW_PRIVATE_URLS="true")
    lines = create_key(env, "me")
    auth = {"Authorization": f"Bearer {lines['key']}"}
    clip = write_sample_clip(tmp_path / "long.mp4", seconds=20)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    args = [CMET, "serve", "--port", str(port), "--models", str(tiny_set)]
    with webhook_receiver(lines["webhook secret"]) as hook:
        with process(args, env, tmp_path / "serve.log") as proc:
            wait_until(lambda: httpx.get(url + "/healthz").status_code == 200, 90, "cmet serve", proc)
            with clip.open("rb") as f:
                r = httpx.post(
                    url + "/v1/edits",
                    headers=auth,
                    files={"video": f},
                    data={"emotion": "happy", "webhook_url": hook.url, "webhook_events": "edit.succeeded"},
                    timeout=60,
                )
            assert r.status_code == 202, r.text
            job_id = r.json()["id"]
            wait_until(
                lambda: httpx.get(f"{url}/v1/edits/{job_id}", headers=auth).json()["progress"] > 0.02, 120, "the edit"
            )
            children = _descendants(proc.pid)
            assert len(children) >= 2, children  # the edit worker and the webhook worker
            asked = time.monotonic()
            proc.send_signal(signal.SIGTERM)  # what docker stop sends (to the main process only)
            code = proc.wait(20)
            took = time.monotonic() - asked
        print(f"\nSIGTERM to exit with an edit running: {took:.2f} s")
        log = (tmp_path / "serve.log").read_text()
        assert code == 0 and took < 8.0, (code, took, log[-3000:])
        assert [pid for pid in children if _alive(pid)] == [], "no process left behind"
        assert "restarting" not in log, "no worker restarted during the shutdown"
        assert _job_record(data, job_id) == ("queued", 0), "handed back, the attempt not counted"

        with process(args, env, tmp_path / "serve2.log") as proc:
            wait_until(lambda: httpx.get(url + "/healthz").status_code == 200, 90, "cmet serve", proc)
            job = _final(url, auth, job_id, 180)
            assert job["state"] == "succeeded", (job, (tmp_path / "serve2.log").read_text()[-3000:])
            assert _job_record(data, job_id) == ("succeeded", 1)
            wait_until(lambda: hook.events() == ["edit.succeeded"], 30, "the webhook")
            asked = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            code = proc.wait(20)
            idle = time.monotonic() - asked
        print(f"SIGTERM to exit, idle: {idle:.2f} s")
        assert code == 0 and idle < 8.0, (code, idle)
