"""Prometheus metrics of the API and a worker: the names we promise, and `promtool check metrics` clean."""

from __future__ import annotations

import shutil
import subprocess
import time

import httpx
import pytest

from tests.service.stack import Stack
from tests.service.test_flow import wait_final


def _promtool(text: str) -> None:
    if shutil.which("promtool") is None:
        pytest.skip("promtool not installed (Debian package `prometheus`)")
    check = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True, text=True, timeout=30)
    assert check.returncode == 0, check.stdout + check.stderr


def test_api_and_worker_metrics(stack: Stack, client: httpx.Client, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from cmet_core.media.sample import write_sample_clip

    clip = write_sample_clip(tmp_path / "m.mp4", seconds=0.2)
    with clip.open("rb") as f:
        job = client.post("/v1/edits", files={"video": f}, data={"emotion": "happy"}).json()
    assert wait_final(client, job["id"])["state"] == "succeeded"
    # every key's job counts: not for API keys or anonymous callers, only the metrics token's bearer
    assert client.get("/metrics").status_code == 401
    assert httpx.get(stack.api_url + "/metrics").status_code == 401
    api = client.get("/metrics", headers={"Authorization": f"Bearer {stack.env['CMET_METRICS_TOKEN']}"})
    assert api.status_code == 200
    assert 'cmet_http_requests_total{method="POST",route="/v1/edits",status="202"}' in api.text
    assert 'route="/v1/edits/{job_id}"' in api.text and job["id"] not in api.text
    succeeded = next(line for line in api.text.splitlines() if line.startswith('cmet_jobs{state="succeeded"}'))
    assert float(succeeded.split()[-1]) >= 1  # jobs by state, counted from the records
    _promtool(api.text)

    port = stack.env["CMET_WORKER_METRICS_PORT"]
    deadline = time.monotonic() + 20
    while True:
        try:
            worker = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
            if 'cmet_jobs_total{state="succeeded"}' in worker:
                break
        except httpx.HTTPError:
            pass
        assert time.monotonic() < deadline, "worker metrics not served"
        time.sleep(0.2)
    for name in (
        "cmet_queue_wait_seconds_bucket",
        "cmet_stage_duration_seconds_bucket",
        "cmet_frames_processed_total",
        "cmet_model_load_seconds_count",
    ):
        assert name in worker, name
    _promtool(worker)
