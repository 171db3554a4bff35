"""Faults with real processes: a worker killed with SIGKILL mid-job, and Redis losing its queue."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import httpx
import pytest

from cmet_core.media.sample import write_sample_clip
from tests.service.conftest import new_key_and_webhook_secret
from tests.service.receiver import webhook_receiver
from tests.service.stack import Stack
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
