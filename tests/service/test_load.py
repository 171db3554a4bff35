"""Load, bounded and on loopback: 100 submissions in about 10 s from 16 threads of 4 keys against the
running stack with tiny models; nothing lost, no 5xx, every job final. A key has at most
`CMET_SUBMISSIONS_PER_KEY` (2) submissions in the API's hands at once: one key sending from 16 threads
would mostly measure that cap (82 of 200 accepted), so the load comes from several keys (as from several
clients), and the only 429s allowed are the cap's. 100 jobs to drain, about as many as the one key's 82.
Prints p50/p99 submit latency."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np

from cmet_core.media.sample import write_sample_clip
from tests.service.conftest import new_key
from tests.service.stack import Stack

SUBMISSIONS = 100
SPREAD_S = 10.0
KEYS = 4  # a key sends every 0.4 s: it meets its cap of 2 only where a submission takes over 0.8 s


def test_100_submissions_from_4_keys(stack: Stack, tmp_path: Path) -> None:
    keys = [new_key(stack, f"load{k}", max_concurrent_jobs=1000, max_submissions_per_minute=1000) for k in range(KEYS)]
    clip = write_sample_clip(tmp_path / "one.mp4", seconds=0.04).read_bytes()
    start = time.monotonic()

    def submit(i: int) -> tuple[int, float, str | None, str | None]:
        time.sleep(max(0.0, start + i * SPREAD_S / SUBMISSIONS - time.monotonic()))
        began = time.monotonic()
        r = httpx.post(
            f"{stack.api_url}/v1/edits",
            headers=_auth(keys[i % KEYS]),
            files={"video": ("v.mp4", clip)},
            data={"emotion": "happy"},
            timeout=60,
        )
        took = time.monotonic() - began
        return r.status_code, took, r.json().get("id") if r.status_code == 202 else None, r.json().get("code")

    with ThreadPoolExecutor(16) as pool:
        results = list(pool.map(submit, range(SUBMISSIONS)))
    submitted_in = time.monotonic() - start
    latencies = np.array([took for _, took, _, _ in results])
    ids = {job: keys[n % KEYS] for n, (_, _, job, _) in enumerate(results) if job}
    refused = [(status, code) for status, _, job, code in results if not job]
    assert all(r == (429, "concurrent_submissions") for r in refused), refused  # no 5xx, no other refusal
    # most get through (83 of 100 on a 2-core machine at load 20); one key from 16 threads: 82 of 200
    assert len(ids) >= SUBMISSIONS // 2, f"{len(ids)} of {SUBMISSIONS} accepted from {KEYS} keys"
    with httpx.Client(base_url=stack.api_url, timeout=30) as client:
        deadline = time.monotonic() + 420
        pending = set(ids)
        while pending and time.monotonic() < deadline:
            pending -= _succeeded(client, keys, pending)
            time.sleep(1)
        states = {client.get(f"/v1/edits/{job}", headers=_auth(ids[job])).json()["state"] for job in pending}
    drained_in = time.monotonic() - start
    print(
        f"\nload: {len(ids)} accepted from {KEYS} keys, {len(refused)} x 429 (the per-key cap), 0 x 5xx, "
        f"submitted in {submitted_in:.1f} s; "
        f"submit latency p50 {1000 * np.percentile(latencies, 50):.0f} ms, "
        f"p99 {1000 * np.percentile(latencies, 99):.0f} ms; "
        f"all final after {drained_in:.0f} s"
    )
    assert not pending, f"{len(pending)} jobs not succeeded: {states}"


def _auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def _succeeded(client: httpx.Client, keys: list[str], wanted: set[str]) -> set[str]:
    """Which of `wanted` succeeded, read from each key's list of its succeeded edits."""
    done: set[str] = set()
    for key in keys:
        cursor: str | None = None
        while True:
            params: dict[str, str | int] = {"limit": 100, "state": "succeeded"} | ({"cursor": cursor} if cursor else {})
            page = client.get("/v1/edits", params=params, headers=_auth(key)).json()
            done |= {job["id"] for job in page["data"]} & wanted
            cursor = page["next_cursor"]
            if not cursor:
                break
    return done
