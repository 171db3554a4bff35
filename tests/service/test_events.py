"""`GET /v1/edits/{id}/events`: a job's progress as server-sent events, against the running stack."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from cmet_core.media.sample import write_sample_clip
from tests.service.conftest import new_key
from tests.service.stack import Stack


def read_events(response: httpx.Response) -> list[tuple[str, dict]]:  # type: ignore[type-arg]
    """(event, data) pairs of an SSE body, comments skipped."""
    found, event, data = [], "message", ""
    for line in response.iter_lines():
        if line.startswith(":"):
            continue
        if not line:
            if data:
                found.append((event, json.loads(data)))
            event, data = "message", ""
        elif line.startswith("event: "):
            event = line[7:]
        elif line.startswith("data: "):
            data += line[6:]
    return found


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_sample_clip(tmp_path_factory.mktemp("clips") / "talk.mp4", seconds=1.0)


def test_events_arrive_in_order_and_end_with_the_final_state(client: httpx.Client, clip: Path) -> None:
    with clip.open("rb") as f:
        job = client.post("/v1/edits", files={"video": ("talk.mp4", f, "video/mp4")}, data={"emotion": "happy"}).json()
    with client.stream("GET", f"/v1/edits/{job['id']}/events", timeout=120) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        events = read_events(r)
    names = [name for name, _ in events]
    assert names[0] == "state" and names[-1] == "result" and names.count("result") == 1, names
    assert set(names) <= {"state", "progress", "result"}
    states = [data["state"] for _, data in events]
    order = ["queued", "running", "succeeded"]
    assert [order.index(s) for s in states] == sorted(order.index(s) for s in states), states
    # `running` is seen unless the job started and ended between two reads of the stream (it samples the
    # record every POLL_S; a 1 s clip on tiny models can be that quick): the final record says it ran
    assert len(events) >= 2 and events[-1][1]["started_at"] is not None, events
    running = [data["progress"] for _, data in events if data["state"] == "running"]
    assert running == sorted(running), "progress never goes back within an attempt"
    final = events[-1][1]
    assert final["state"] == "succeeded" and final["progress"] == 1.0 and final["output_url"], final
    assert final == {**client.get(f"/v1/edits/{job['id']}").json(), "output_url": final["output_url"]}

    # a finished job's stream is its final state at once
    with client.stream("GET", f"/v1/edits/{job['id']}/events") as r:
        assert [name for name, _ in read_events(r)] == ["result"]


def test_events_of_another_key_or_without_a_key_are_refused(stack: Stack, client: httpx.Client, clip: Path) -> None:
    with clip.open("rb") as f:
        job = client.post("/v1/edits", files={"video": ("talk.mp4", f, "video/mp4")}, data={"emotion": "sad"}).json()
    other = {"Authorization": f"Bearer {new_key(stack, 'other')}"}
    r = httpx.get(f"{stack.api_url}/v1/edits/{job['id']}/events", headers=other)
    assert r.status_code == 404 and r.json()["code"] == "edit_not_found"
    r = httpx.get(f"{stack.api_url}/v1/edits/{job['id']}/events")
    assert r.status_code == 401 and r.json()["code"] == "unauthorized"
    r = client.get("/v1/edits/job_missing/events")
    assert r.status_code == 404 and r.json()["code"] == "edit_not_found"


def test_open_streams_hold_no_connection_or_thread(stack: Stack, client: httpx.Client, tmp_path: Path) -> None:
    """More streams than the API's database pool (10 + 20) and its thread pool (40) hold, all open at
    once on jobs that wait: each gets its first event, and other requests are answered meanwhile. Three
    keys hold 15 streams each (a key may hold CMET_EVENT_STREAMS_PER_KEY, 20, in a process)."""
    import threading
    import time

    long_clip = write_sample_clip(tmp_path / "long.mp4", seconds=8.0)
    with long_clip.open("rb") as f:  # keeps the one test worker busy, so the others wait in the queue
        running = client.post("/v1/edits", files={"video": f}, data={"emotion": "happy"}).json()["id"]
    keys = [new_key(stack, f"follower-{i}") for i in range(3)]
    followers = [httpx.Client(base_url=stack.api_url, headers={"Authorization": f"Bearer {k}"}) for k in keys]
    waiting = []
    for follower in followers:
        with long_clip.open("rb") as f:
            waiting.append(follower.post("/v1/edits", files={"video": f}, data={"emotion": "happy"}).json()["id"])
    per_key = 15
    streams, first_events = per_key * len(followers), threading.Barrier(per_key * len(followers) + 1, timeout=60)
    stop = threading.Event()

    def follow(n: int) -> None:
        follower, job_id = followers[n % len(followers)], waiting[n % len(followers)]
        with httpx.Client(base_url=stack.api_url, headers=follower.headers, timeout=90) as own:
            with own.stream("GET", f"/v1/edits/{job_id}/events") as r:
                lines = r.iter_lines()
                while not next(lines).startswith("data: "):
                    pass
                first_events.wait()
                stop.wait(60)

    threads = [threading.Thread(target=follow, args=(n,), daemon=True) for n in range(streams)]
    for t in threads:
        t.start()
    try:
        first_events.wait()  # every stream has its first event
        started = time.monotonic()
        assert followers[0].get(f"/v1/edits/{waiting[0]}").json()["state"] in ("queued", "running")
        assert client.get("/v1/edits").status_code == 200
        assert time.monotonic() - started < 5.0
    finally:
        stop.set()
        client.post(f"/v1/edits/{running}/cancel")
        for follower, job_id in zip(followers, waiting, strict=True):
            follower.post(f"/v1/edits/{job_id}/cancel")
    for t in threads:
        t.join(30)


def test_head_on_a_running_jobs_events_answers_at_once(client: httpx.Client, tmp_path: Path) -> None:
    clip = write_sample_clip(tmp_path / "long.mp4", seconds=4.0)
    with clip.open("rb") as f:
        job = client.post("/v1/edits", files={"video": f}, data={"emotion": "happy"}).json()
    try:
        head = client.head(f"/v1/edits/{job['id']}/events", timeout=10)
        assert head.status_code == 200 and head.headers["content-type"].startswith("text/event-stream")
        assert head.content == b""
        assert client.get(f"/v1/edits/{job['id']}").json()["state"] in ("queued", "running")  # it did not wait
    finally:
        client.post(f"/v1/edits/{job['id']}/cancel")
