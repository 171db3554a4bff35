"""Several faces through the API and a real worker: `select: "speaker"` on a short two-person clip whose talkers
take turns (`make_two_face_clip`), the job's result listing who spoke when."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from tests.media_factory import make_two_face_clip
from tests.service.test_flow import wait_final

TURN_S = 1.2


@pytest.fixture(scope="module")
def two_faces(test_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_two_face_clip(test_data, tmp_path_factory.mktemp("two") / "talk.mp4", turn_s=TURN_S)


def test_the_speaker_edit_through_the_api_lists_who_spoke_when(client: httpx.Client, two_faces: Path) -> None:
    faces = [{"select": "speaker", "emotion": "happy"}]
    with two_faces.open("rb") as f:
        r = client.post("/v1/edits", files={"video": f}, data={"faces": json.dumps(faces), "quality": "false"})
    assert r.status_code == 202, r.text
    assert r.json()["faces"][0]["select"] == "speaker"
    done = wait_final(client, r.json()["id"])
    assert done["state"] == "succeeded", done
    speakers = done["result"]["speakers"]
    assert [turn["face"] for turn in speakers] == [0, 1], speakers  # the left talker first, then the right
    assert speakers[0]["start_s"] == 0 and abs(speakers[0]["end_s"] - TURN_S) < 0.6, speakers
    assert abs(speakers[-1]["end_s"] - done["result"]["duration_s"]) < 0.1, speakers
