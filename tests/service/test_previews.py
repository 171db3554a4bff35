"""Previews against the running service (real API, Celery worker, PostgreSQL, S3): contact sheets and clip
previews as jobs, listed apart from edits, with webhooks, idempotency, tenant isolation, and their own
queue that the worker serves before waiting edits."""

from __future__ import annotations

import io
import time
from datetime import datetime
from pathlib import Path

import httpx
import pytest
from PIL import Image

from cmet_core.edit.preview import CELL, HEADER_H, LABEL_W
from cmet_core.media.sample import write_sample_clip
from cmet_core.media.video import probe
from tests.service.conftest import new_key, new_key_and_webhook_secret
from tests.service.stack import Stack
from tests.service.test_flow import wait_final


def wait_preview(client: httpx.Client, job_id: str) -> dict:  # type: ignore[type-arg]
    return wait_final(client, job_id, path="/v1/previews")


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_sample_clip(tmp_path_factory.mktemp("previews") / "talk.mp4", seconds=0.8)


def _sheet(client: httpx.Client, clip: Path, **fields: object) -> httpx.Response:
    data = {"emotions": ["happy", "sad", "sarcastic"], "intensities": ["0.5", "1", "1.5"], **fields}
    with clip.open("rb") as f:
        return client.post("/v1/previews", files={"video": ("talk.mp4", f, "video/mp4")}, data=data)


def test_contact_sheet_grid_and_single_images(client: httpx.Client, clip: Path) -> None:
    r = _sheet(client, clip, frame="5")
    assert r.status_code == 202, r.text
    job = r.json()
    assert r.headers["location"] == f"/v1/previews/{job['id']}"
    assert job["object"] == "preview" and job["kind"] == "sheet" and job["state"] == "queued"
    assert job["id"].startswith("sht_")  # a sheet's own prefix: it is no edit
    done = wait_preview(client, job["id"])
    assert done["state"] == "succeeded", done
    assert done["frame"] == 5 and done["emotions"] == ["happy", "sad", "sarcastic"]
    grid = Image.open(io.BytesIO(httpx.get(done["sheet_url"], timeout=30).content))
    assert grid.format == "PNG" and grid.size == (LABEL_W + 3 * CELL, HEADER_H + 3 * CELL)
    assert [(c["emotion"], c["intensity"]) for c in done["cells"][:4]] == [
        ("happy", 0.5),
        ("happy", 1.0),
        ("happy", 1.5),
        ("sad", 0.5),
    ]
    cell = Image.open(io.BytesIO(httpx.get(done["cells"][-1]["url"], timeout=30).content))
    assert cell.size == (256, 256) and len(done["cells"]) == 9
    # listed apart from edits; not an edit
    assert job["id"] in [p["id"] for p in client.get("/v1/previews", params={"limit": 100}).json()["data"]]
    assert job["id"] not in [e["id"] for e in client.get("/v1/edits", params={"limit": 100}).json()["data"]]
    assert client.get(f"/v1/edits/{job['id']}").json()["code"] == "edit_not_found"


def test_clip_preview_is_an_edit_listed_with_previews(client: httpx.Client, tmp_path: Path) -> None:
    src = write_sample_clip(tmp_path / "long.mp4", seconds=2.0)
    with src.open("rb") as f:
        r = client.post(
            "/v1/edits", files={"video": f}, data={"emotion": "happy", "preview_s": "0.4", "preview_start_s": "1.2"}
        )
    assert r.status_code == 202, r.text
    job_id = r.json()["id"]
    assert r.json()["preview_s"] == 0.4
    done = wait_preview(client, job_id)
    assert done["state"] == "succeeded" and done["kind"] == "clip", done
    assert done["preview_s"] == 0.4 and done["preview_start_s"] == 1.2 and done["result"]["frames"] == 10
    (tmp_path / "p.mp4").write_bytes(httpx.get(done["output_url"], timeout=30).content)
    info = probe(tmp_path / "p.mp4")
    assert info.frame_count == 10 and info.has_audio and abs(info.duration_s - 0.4) < 0.05
    assert wait_final(client, job_id)["output_url"]  # read as the edit it was submitted as, too
    assert job_id not in [e["id"] for e in client.get("/v1/edits", params={"limit": 100}).json()["data"]]
    assert job_id in [p["id"] for p in client.get("/v1/previews", params={"limit": 100}).json()["data"]]


def test_bad_windows_and_frames_are_refused_at_submission(client: httpx.Client, clip: Path) -> None:
    with clip.open("rb") as f:
        r = client.post(
            "/v1/edits", files={"video": f}, data={"emotion": "happy", "preview_s": "1", "preview_start_s": "5"}
        )
    assert r.status_code == 422 and r.json()["code"] == "bad_preview_window"
    r = _sheet(client, clip, frame="400")
    assert r.status_code == 422 and r.json()["code"] == "bad_preview_frame"
    r = _sheet(client, clip, emotions=["happy", "nope"])
    assert r.status_code == 422 and r.json()["code"] == "unknown_emotion"
    assert client.post("/v1/previews", json={"emotions": ["happy"]}).json()["code"] == "video_missing"


def test_previews_are_the_keys_own(client: httpx.Client, stack: Stack, clip: Path) -> None:
    job = _sheet(client, clip).json()
    other = httpx.Client(base_url=stack.api_url, headers={"Authorization": f"Bearer {new_key(stack, 'stranger')}"})
    with other:
        r = other.get(f"/v1/previews/{job['id']}")
        assert r.status_code == 404 and r.json()["code"] == "preview_not_found"
        assert other.get("/v1/previews").json()["data"] == []
        assert other.post(f"/v1/previews/{job['id']}/cancel").status_code == 404
        assert other.delete(f"/v1/previews/{job['id']}").status_code == 404
    assert wait_preview(client, job["id"])["state"] == "succeeded"
    assert client.delete(f"/v1/previews/{job['id']}").status_code == 204
    assert client.get(f"/v1/previews/{job['id']}").status_code == 404
    assert not stack.objects(f"jobs/{job['id']}/")


def test_idempotent_submission(client: httpx.Client, clip: Path) -> None:
    headers = {"Idempotency-Key": f"sheet-{time.time_ns()}"}
    with clip.open("rb") as f:
        first = client.post("/v1/previews", files={"video": f}, data={"emotions": ["sad"]}, headers=headers)
    with clip.open("rb") as f:
        again = client.post("/v1/previews", files={"video": f}, data={"emotions": ["sad"]}, headers=headers)
    with clip.open("rb") as f:
        other = client.post("/v1/previews", files={"video": f}, data={"emotions": ["happy"]}, headers=headers)
    assert first.status_code == again.status_code == 202 and first.json()["id"] == again.json()["id"]
    assert other.status_code == 422 and other.json()["code"] == "idempotency_key_reused"


def test_preview_webhooks(stack: Stack, clip: Path) -> None:
    """A sheet that succeeds sends `preview.succeeded` with its URLs; one whose frame the worker finds
    outside the clip (an asset input is probed there, not at submission) sends `preview.failed`."""
    from tests.service.receiver import webhook_receiver

    secret, webhook_secret = new_key_and_webhook_secret(stack, "preview-hooks")
    with (
        httpx.Client(base_url=stack.api_url, headers={"Authorization": f"Bearer {secret}"}, timeout=60) as client,
        webhook_receiver(webhook_secret) as hook,
    ):
        good = _sheet(client, clip, webhook_url=hook.url).json()
        body = {"kind": "video", "size": len(clip.read_bytes()), "filename": "t.mp4"}
        upload = client.post("/v1/uploads", json=body).json()
        httpx.put(upload["upload_url"], content=clip.read_bytes(), headers=upload["headers"], timeout=30)
        bad = client.post(
            "/v1/previews",
            json={"video_asset": upload["id"], "emotions": ["happy"], "frame": 500, "webhook_url": hook.url},
        )
        assert bad.status_code == 202, bad.text
        deadline = time.monotonic() + 120
        while not {"preview.succeeded", "preview.failed"} <= set(hook.events()):
            assert time.monotonic() < deadline, hook.events()
            time.sleep(0.2)
    by_event = {c.body["type"]: c.body["data"] for c in hook.calls if c.verified}
    assert by_event["preview.succeeded"]["id"] == good["id"] and by_event["preview.succeeded"]["sheet_url"]
    assert by_event["preview.failed"]["id"] == bad.json()["id"]
    assert by_event["preview.failed"]["error"]["code"] == "bad_preview_frame"
    assert {"preview.running"} <= set(hook.events()) and not [e for e in hook.events() if e.startswith("edit.")]


def _at(job: dict, field: str) -> datetime:  # type: ignore[type-arg]
    return datetime.fromisoformat(job[field])


def test_previews_go_before_waiting_edits(client: httpx.Client, tmp_path: Path) -> None:
    """One worker, one job at a time: while a long edit runs, a second edit waits, then a sheet is
    submitted. The sheet runs as soon as the long edit ends, before the edit that waited longer."""
    long_clip = write_sample_clip(tmp_path / "long.mp4", seconds=4.0)
    short_clip = write_sample_clip(tmp_path / "short.mp4", seconds=0.4)
    with long_clip.open("rb") as f:
        running = client.post("/v1/edits", files={"video": f}, data={"emotion": "angry"}).json()
    deadline = time.monotonic() + 60
    while client.get(f"/v1/edits/{running['id']}").json()["state"] != "running":
        assert time.monotonic() < deadline
        time.sleep(0.05)
    with short_clip.open("rb") as f:
        waiting = client.post("/v1/edits", files={"video": f}, data={"emotion": "sad"}).json()
    sheet = _sheet(client, short_clip, emotions=["happy"], intensities=["1"]).json()
    assert client.get(f"/v1/edits/{running['id']}").json()["state"] == "running", "the long edit ended too soon"
    long_done, sheet_done = wait_final(client, running["id"]), wait_preview(client, sheet["id"])
    waited = wait_final(client, waiting["id"])
    assert long_done["state"] == sheet_done["state"] == waited["state"] == "succeeded"
    assert _at(long_done, "finished_at") <= _at(sheet_done, "started_at")
    assert _at(sheet_done, "finished_at") <= _at(waited, "started_at")
