"""Emotion over time through the running service: a three-segment timeline and a from_audio edit."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from cmet_core.media.sample import write_sample_clip
from tests.service.conftest import upload_asset
from tests.service.test_flow import wait_final


@pytest.fixture(scope="module")
def talk(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_sample_clip(tmp_path_factory.mktemp("timeline") / "talk.mp4", seconds=1.2)


def test_a_three_segment_timeline(client: httpx.Client, talk: Path, test_data: Path) -> None:
    surprised = sorted((test_data / "speech" / "MEAD" / "surprised").glob("*.wav"))[0]
    plan = {
        "transition_s": 0.2,
        "segments": [
            {"start_s": 0.0, "end_s": 0.4, "target": "angry", "intensity": 0.8},
            {
                "start_s": 0.4,
                "end_s": 0.8,
                "target": {"speech_assets": [upload_asset(client, surprised, "speech", "audio/wav")]},
            },
            {
                "start_s": 0.8,
                "end_s": 1.2,
                "target": "happy=0.6,surprised=0.4",
                "keyframes": [{"t_s": 0.9, "intensity": 0.5}, {"t_s": 1.1, "intensity": 1.5}],
            },
        ],
    }
    with talk.open("rb") as f:
        r = client.post("/v1/edits", files={"video": ("talk.mp4", f, "video/mp4")}, data={"timeline": json.dumps(plan)})
    assert r.status_code == 202, r.text
    shown = r.json()["timeline"]
    assert [s["target"] for s in shown["segments"]] == ["angry", {"speech_clips": 1}, "happy=0.6,surprised=0.4"]
    assert shown["transition_s"] == 0.2 and shown["segments"][2]["keyframes"][1] == {"t_s": 1.1, "intensity": 1.5}
    done = wait_final(client, r.json()["id"])
    assert done["state"] == "succeeded", done
    assert done["result"]["frames"] == 30 and done["timeline"] == shown and done["result"]["segments"] is None


def test_from_audio_lists_its_segments_which_go_back_as_a_timeline(client: httpx.Client, talk: Path) -> None:
    with talk.open("rb") as f:
        r = client.post("/v1/edits", files={"video": f}, data={"emotion": "from_audio", "neutral": "self"})
    assert r.status_code == 202, r.text
    done = wait_final(client, r.json()["id"])
    assert done["state"] == "succeeded", done
    segments = done["result"]["segments"]
    assert segments and segments[0]["start_s"] == 0 and segments[-1]["end_s"] <= 1.25
    assert all({"start_s", "end_s", "target", "intensity", "cosine", "keyframes"} <= set(s) for s in segments)
    plan = {"segments": [{k: v for k, v in s.items() if k != "cosine"} for s in segments]}
    with talk.open("rb") as f:
        again = client.post("/v1/edits", files={"video": f}, data={"timeline": json.dumps(plan)})
    assert again.status_code == 202, again.text
    assert wait_final(client, again.json()["id"])["state"] == "succeeded"
