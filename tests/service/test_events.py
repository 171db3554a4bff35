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
    assert "running" in states and len(events) >= 3, events
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
