"""Load, bounded and on loopback: 200 submissions in about 10 s against the running stack with tiny
models; nothing lost, no 5xx (429 allowed), every job final. Prints p50/p99 submit latency."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np

from cmet_core.media.sample import write_sample_clip
from tests.service.conftest import new_key
from tests.service.stack import Stack

SUBMISSIONS = 200
SPREAD_S = 10.0


def test_200_submissions(stack: Stack, tmp_path: Path) -> None:
    key = new_key(stack, "load", max_concurrent_jobs=1000, max_submissions_per_minute=1000)
    clip = write_sample_clip(tmp_path / "one.mp4", seconds=0.04).read_bytes()
    headers = {"Authorization": f"Bearer {key}"}
    start = time.monotonic()

    def submit(i: int) -> tuple[int, float, str | None]:
        time.sleep(max(0.0, start + i * SPREAD_S / SUBMISSIONS - time.monotonic()))
        began = time.monotonic()
        r = httpx.post(
            f"{stack.api_url}/v1/edits",
            headers=headers,
            files={"video": ("v.mp4", clip)},
            data={"emotion": "happy"},
            timeout=60,
        )
        return r.status_code, time.monotonic() - began, r.json().get("id") if r.status_code == 202 else None

    with ThreadPoolExecutor(16) as pool:
        results = list(pool.map(submit, range(SUBMISSIONS)))
    submitted_in = time.monotonic() - start
    statuses = [s for s, _, _ in results]
    latencies = np.array([t for _, t, _ in results])
    ids = [i for _, _, i in results if i]
    assert all(s in (202, 429) for s in statuses), sorted(set(statuses))
    with httpx.Client(base_url=stack.api_url, headers=headers, timeout=30) as client:
        deadline = time.monotonic() + 420
        pending = set(ids)
        while pending and time.monotonic() < deadline:
            page = client.get("/v1/edits", params={"limit": 100, "state": "succeeded"}).json()
            cursor = page["next_cursor"]
            done = {j["id"] for j in page["data"]}
            while cursor:
                page = client.get("/v1/edits", params={"limit": 100, "state": "succeeded", "cursor": cursor}).json()
                done |= {j["id"] for j in page["data"]}
                cursor = page["next_cursor"]
            pending -= done
            time.sleep(1)
        states = {client.get(f"/v1/edits/{i}").json()["state"] for i in pending}
    drained_in = time.monotonic() - start
    print(
        f"\nload: {len(ids)} accepted, {statuses.count(429)} x 429, 0 x 5xx, submitted in {submitted_in:.1f} s; "
        f"submit latency p50 {1000 * np.percentile(latencies, 50):.0f} ms, "
        f"p99 {1000 * np.percentile(latencies, 99):.0f} ms; "
        f"all final after {drained_in:.0f} s"
    )
    assert not pending, f"{len(pending)} jobs not succeeded: {states}"
