"""Expression from a reference through the running service (tiny EDTalk set): a photo as a multipart part, a
clip as an asset in a timeline segment, and the refusals (two targets at once, a part that is not media, a
reference without a face)."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from cmet_core.media.sample import write_sample_clip
from tests.media_factory import make_video
from tests.service.conftest import upload_asset
from tests.service.test_flow import wait_final


@pytest.fixture(scope="module")
def talk(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_sample_clip(tmp_path_factory.mktemp("reference") / "talk.mp4", seconds=0.4)


def test_a_reference_photo_part_edits_without_the_connector(client: httpx.Client, talk: Path, test_data: Path) -> None:
    photo = test_data / "faces" / "ang_crop.png"
    with talk.open("rb") as f, photo.open("rb") as p:
        files = {"video": ("talk.mp4", f, "video/mp4"), "expression_reference": ("ang.png", p, "image/png")}
        r = client.post("/v1/edits", files=files, data={"intensity": "0.8", "quality": "false"})
    assert r.status_code == 202, r.text
    done = wait_final(client, r.json()["id"])
    assert done["state"] == "succeeded", done
    assert done["result"]["frames"] == 10 and done["result"]["connector"] is None and done["emotion"] is None


def test_a_timeline_segment_takes_a_reference_clip_asset(client: httpx.Client, talk: Path, tmp_path: Path) -> None:
    reference = upload_asset(client, write_sample_clip(tmp_path / "smile.mp4", seconds=0.2), "video", "video/mp4")
    plan = {
        "transition_s": 0.1,
        "segments": [
            {"start_s": 0.0, "end_s": 0.2, "target": "happy"},
            {"start_s": 0.2, "end_s": 0.4, "target": {"expression_reference_asset": reference}, "intensity": 1.5},
        ],
    }
    with talk.open("rb") as f:
        data = {"timeline": json.dumps(plan), "quality": "false"}
        r = client.post("/v1/edits", files={"video": ("talk.mp4", f, "video/mp4")}, data=data)
    assert r.status_code == 202, r.text
    assert [s["target"] for s in r.json()["timeline"]["segments"]] == ["happy", {"expression_reference": True}]
    done = wait_final(client, r.json()["id"])
    assert done["state"] == "succeeded", done
    assert done["result"]["connector"]  # the named segment ran the connector


def test_references_are_refused_at_submission_or_with_no_face(client: httpx.Client, talk: Path, tmp_path: Path) -> None:
    both = client.post(
        "/v1/edits",
        json={
            "video_url": "https://example.com/a.mp4",
            "emotion": "happy",
            "expression_reference_url": "https://example.com/r.png",
        },
    )
    assert both.status_code == 422 and both.json()["code"] == "invalid_request", both.text
    text = tmp_path / "notes.txt"
    text.write_text("not a face")
    with talk.open("rb") as f, text.open("rb") as t:
        r = client.post("/v1/edits", files={"video": f, "expression_reference": ("r.png", t, "image/png")})
    assert r.status_code == 422 and r.json()["code"] == "not_media", r.text
    faceless = make_video(tmp_path / "faceless.mp4", frames=3, size=(128, 96))
    with talk.open("rb") as f, faceless.open("rb") as g:
        r = client.post("/v1/edits", files={"video": f, "expression_reference": g}, data={"quality": "false"})
    assert r.status_code == 202, r.text
    done = wait_final(client, r.json()["id"])
    assert done["state"] == "failed" and done["error"]["code"] == "no_face", done
    assert "expression reference" in done["error"]["message"]
