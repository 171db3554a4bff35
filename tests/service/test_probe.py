"""`/v1/uploads/{id}/probe` against the running stack: a worker measures an uploaded video and finds its face."""

from __future__ import annotations

import time
from pathlib import Path

import httpx

from cmet_core.media.video import probe
from tests.media_factory import make_video
from tests.service.conftest import new_key
from tests.service.stack import Stack
from tests.service.test_assets import _upload


def _answer(client: httpx.Client, asset_id: str, timeout: float = 90) -> dict:  # type: ignore[type-arg]
    made = client.post(f"/v1/uploads/{asset_id}/probe")
    assert made.status_code == 202 and made.json()["state"] == "pending", made.text
    deadline = time.monotonic() + timeout
    while (answer := client.get(f"/v1/uploads/{asset_id}/probe").json())["state"] == "pending":
        assert time.monotonic() < deadline, "the probe did not answer"
        time.sleep(0.2)
    return answer  # type: ignore[no-any-return]


def test_a_probe_gives_length_fps_size_and_the_face(client: httpx.Client, stack: Stack, test_data: Path) -> None:
    video = test_data / "video" / "mead_W009_038_cropped.mp4"
    asset = _upload(client, video.read_bytes())
    answer = _answer(client, asset["id"])
    info = probe(video)
    assert answer["state"] == "ready", answer
    assert (answer["width"], answer["height"], answer["frames"]) == (info.width, info.height, info.frame_count)
    assert abs(answer["duration_s"] - info.duration_s) < 1e-6 and abs(answer["fps"] - float(info.fps)) < 1e-6
    x0, y0, x1, y1 = answer["face"]["box"]
    # a cropped talking head: the face is in the middle and fills a good part of the frame
    assert 0 <= x0 < info.width / 2 < x1 <= info.width and 0 <= y0 < info.height / 2 < y1 <= info.height
    assert (x1 - x0) > info.width / 4, answer

    other = {"Authorization": f"Bearer {new_key(stack, 'prober')}"}
    for method in ("GET", "POST"):
        r = httpx.request(method, f"{stack.api_url}/v1/uploads/{asset['id']}/probe", headers=other)
        assert r.status_code == 404 and r.json()["code"] == "asset_not_found", r.text


def test_a_probe_reports_the_code_an_edit_would_fail_with(client: httpx.Client, tmp_path: Path) -> None:
    faceless = _upload(client, make_video(tmp_path / "gradient.mp4", frames=15, size=(96, 64)).read_bytes())
    answer = _answer(client, faceless["id"])
    assert answer["state"] == "failed" and answer["error"]["code"] == "no_face", answer

    text = _upload(client, b"just some notes, not a video\n" * 40, "notes.txt")
    r = client.post(f"/v1/uploads/{text['id']}/probe")
    assert r.status_code == 422 and r.json()["code"] == "not_media", r.text
    empty = client.post("/v1/uploads", json={"kind": "video", "size": 1000}).json()
    r = client.post(f"/v1/uploads/{empty['id']}/probe")
    assert r.status_code == 422 and r.json()["code"] == "asset_not_uploaded", r.text
