"""Faults with real processes: a worker killed with SIGKILL mid-job, and Redis losing its queue."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import httpx
import pytest

from cmet_core.media.sample import write_sample_clip
from tests.service.conftest import new_key_and_webhook_secret
from tests.service.receiver import webhook_receiver
from tests.service.stack import Stack, wait_until
from tests.service.test_flow import wait_final


def test_sigkill_mid_job_completes_once_after_restart(stack: Stack, tmp_path: Path) -> None:
    secret, webhook_secret = new_key_and_webhook_secret(stack, "faults", max_concurrent_jobs=5)
    client = httpx.Client(base_url=stack.api_url, headers={"Authorization": f"Bearer {secret}"}, timeout=60)
    clip = write_sample_clip(tmp_path / "long.mp4", seconds=30)
    with webhook_receiver(webhook_secret) as hook:
        with clip.open("rb") as f:
            job_id = client.post(
                "/v1/edits", files={"video": f}, data={"emotion": "sad", "webhook_url": hook.url}
            ).json()["id"]
        deadline = time.monotonic() + 120
        while (job := client.get(f"/v1/edits/{job_id}").json())["progress"] < 0.2:
            assert job["state"] in ("queued", "running") and time.monotonic() < deadline, job
            time.sleep(0.05)
        stack.stop_worker(signal.SIGKILL)
        killed_at = time.monotonic()
        assert client.get(f"/v1/edits/{job_id}").json()["state"] == "running"
        scratch = Path(stack.env["CMET_DATA_DIR"]) / "scratch"
        left = [p for p in scratch.glob(f"cmet-{job_id}-*") if p.is_dir()]
        assert left, "the killed attempt's scratch folder (a copy of the input)"
        stack.start_worker()
        picked_up = None
        while picked_up is None:
            job = client.get(f"/v1/edits/{job_id}").json()
            if job["state"] in ("succeeded", "failed") or job["stage"] == "faces" or job["progress"] < 0.2:
                picked_up = time.monotonic() - killed_at
            assert time.monotonic() - killed_at < 90, "the job was not picked up again"
            time.sleep(0.05)
        done = wait_final(client, job_id, timeout=180)
        assert done["state"] == "succeeded", done
        time.sleep(2)
        assert hook.events().count("edit.succeeded") == 1
        assert not [p for p in left if p.exists()], "swept by the next worker"
    print(f"\npick-up after SIGKILL: {picked_up:.1f} s")
    assert picked_up < 30
    assert [k for k in stack.objects(f"jobs/{job_id}/") if not k.split("/")[-2] == "input"] == [
        f"jobs/{job_id}/output.mp4"
    ]


@pytest.mark.usefixtures("stack")
def test_queued_jobs_survive_a_lost_queue(stack: Stack, client: httpx.Client, tmp_path: Path) -> None:
    """Redis here keeps nothing on disk, so a restart loses every waiting message: the reconciler
    re-enqueues queued jobs from their records."""
    import redis

    clip = write_sample_clip(tmp_path / "q.mp4", seconds=0.2)
    stack.stop_worker()
    ids = []
    for _ in range(3):
        with clip.open("rb") as f:
            ids.append(client.post("/v1/edits", files={"video": f}, data={"emotion": "happy"}).json()["id"])
    redis.Redis(host="127.0.0.1", port=6379, db=int(stack.env["CMET_BROKER_URL"].rsplit("/", 1)[-1])).flushdb()
    stack.start_worker()
    for job_id in ids:
        assert wait_final(client, job_id, timeout=120)["state"] == "succeeded"


def test_unreachable_storage_fails_with_a_storage_code(stack: Stack, client: httpx.Client, tmp_path: Path) -> None:
    """The worker cannot reach S3: it retries with backoff (2, 4, 8 s), then the job fails with `storage`."""
    clip = write_sample_clip(tmp_path / "s.mp4", seconds=0.2)
    stack.stop_worker()
    healthy_env = stack.env
    stack.env = {**healthy_env, "CMET_S3_ENDPOINT_URL": "http://127.0.0.1:9"}  # discard port: connection refused
    try:
        stack.start_worker()
        with clip.open("rb") as f:
            job_id = client.post("/v1/edits", files={"video": f}, data={"emotion": "happy"}).json()["id"]
        started = time.monotonic()
        done = wait_final(client, job_id, timeout=120)
        assert done["state"] == "failed" and done["error"]["code"] == "storage", done
        assert time.monotonic() - started > 10  # it retried before giving up
    finally:
        stack.stop_worker()
        stack.env = healthy_env
        stack.start_worker()


def test_cancel_reaches_a_running_job_and_removes_its_files(stack: Stack, client: httpx.Client, tmp_path: Path) -> None:
    clip = write_sample_clip(tmp_path / "long.mp4", seconds=30)
    with clip.open("rb") as f:
        job_id = client.post("/v1/edits", files={"video": f}, data={"emotion": "angry"}).json()["id"]
    deadline = time.monotonic() + 120
    while client.get(f"/v1/edits/{job_id}").json()["progress"] < 0.2:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    asked = time.monotonic()
    assert client.post(f"/v1/edits/{job_id}/cancel").status_code == 200
    done = wait_final(client, job_id, timeout=60)
    took = time.monotonic() - asked
    print(f"\ncancel of a running job took {took:.2f} s")
    assert done["state"] == "canceled" and took < 10
    assert [k for k in stack.objects(f"jobs/{job_id}/") if "/input/" not in k] == []
    # the slot is free: the next job runs
    small = write_sample_clip(tmp_path / "small.mp4", seconds=0.2)
    with small.open("rb") as f:
        nxt = client.post("/v1/edits", files={"video": f}, data={"emotion": "happy"}).json()["id"]
    assert wait_final(client, nxt)["state"] == "succeeded"


def _pool_children(worker_pid: int) -> list[int]:
    """The prefork pool's child processes of a Celery worker's main process."""
    path = Path(f"/proc/{worker_pid}/task/{worker_pid}/children")
    return [int(pid) for pid in path.read_text().split()] if path.exists() else []


def _database_ports(pid: int) -> list[int]:
    """Local ports of the process's TCP connections to PostgreSQL (port 5432), read from /proc."""
    links = (os.readlink(fd) for fd in Path(f"/proc/{pid}/fd").iterdir() if fd.is_symlink())
    inodes = {link[8:-1] for link in links if link.startswith("socket:[")}
    rows = (line.split() for line in Path("/proc/net/tcp").read_text().splitlines()[1:])
    return [int(row[1].split(":")[1], 16) for row in rows if row[2].endswith(":1538") and row[9] in inodes]


SWEEP_JUST_ENDED = """SELECT bool_and(state = 'idle') AND max(state_change) > now() - interval '0.5 s'
FROM pg_stat_activity WHERE client_port = ANY(%s)"""
"""The connections of these ports are all idle, one since less than 0.5 s: the sweeper (a round every
3 s) just put its connection back in the pool."""


def test_a_replaced_pool_child_opens_its_own_database_connections(
    stack: Stack, client: httpx.Client, tmp_path: Path
) -> None:
    """Prefork replaces a lost child (crash, OOM, time limit) by forking the main process, whose sweeper
    thread keeps PostgreSQL connections in its pool. A child that used them would share a connection with
    the main process (`EMPTY_QUERY`, `prepared statement already exists`, each committing the other's work).

    The child is killed just after a sweep, so the main process forks with its connection idle in the
    pool. The new child is stopped while the test submits a job and holds its row, then resumed just
    after a sweep: its claim waits on the row, and the test reads whose connection it came on."""
    import psycopg

    assert stack.worker is not None
    parent, log = stack.worker.pid, stack.logs / "worker.log"
    dsn = stack.extra["database_url"].replace("+psycopg", "")
    wait_until(lambda: client.get("/readyz").status_code == 200, 60, "a ready worker")
    warm = lambda: _pool_children(parent) and "models loaded" in log.read_text(errors="replace")  # noqa: E731
    wait_until(warm, 60, "a warm child")
    with psycopg.connect(dsn, autocommit=True) as watcher:
        just_swept = lambda: watcher.execute(SWEEP_JUST_ENDED, (_database_ports(parent),)).fetchone()[0]  # noqa: E731
        wait_until(just_swept, 30, "a sweep that just ended")
        os.kill(_pool_children(parent)[0], signal.SIGKILL)
        since = log.stat().st_size  # the killed child logs nothing more
        rewarmed = lambda: "models loaded" in log.read_text(errors="replace")[since:]  # noqa: E731
        wait_until(rewarmed, 60, "a new child with its models loaded")
        child = _pool_children(parent)[0]
        os.kill(child, signal.SIGSTOP)
        try:
            with write_sample_clip(tmp_path / "c.mp4", seconds=0.2).open("rb") as f:
                job_id = client.post("/v1/edits", files={"video": f}, data={"emotion": "happy"}).json()["id"]
            with psycopg.connect(dsn) as holder:
                holder.execute("SELECT 1 FROM jobs WHERE id = %s FOR UPDATE", (job_id,))
                wait_until(just_swept, 30, "a sweep that just ended")
                os.kill(child, signal.SIGCONT)
                waiting = "SELECT client_port FROM pg_stat_activity WHERE %s = ANY(pg_blocking_pids(pid))"
                claim = lambda: watcher.execute(waiting, (holder.info.backend_pid,)).fetchone()  # noqa: E731
                wait_until(claim, 10, "the child's claim")  # the sweeper would re-queue the job after 15 s
                shared = claim()[0] in _database_ports(parent)
        finally:
            os.kill(child, signal.SIGCONT)
    assert not shared, "the new child claimed its job on a connection of the main process"
    assert wait_final(client, job_id)["state"] == "succeeded"
