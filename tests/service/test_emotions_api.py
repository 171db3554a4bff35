"""Custom emotions: registered from speech clips, built by the worker, then usable by name, id or in blends."""

from __future__ import annotations

import time
from pathlib import Path

import httpx

from cmet_core.media.sample import write_sample_clip
from tests.service.test_flow import wait_final


def test_register_use_and_delete_a_custom_emotion(client: httpx.Client, test_data: Path, tmp_path: Path) -> None:
    clips = sorted((test_data / "speech" / "MELD" / "sarcastic").glob("*.wav"))
    files = [("speech", (p.name, p.read_bytes(), "audio/wav")) for p in clips]
    r = client.post("/v1/emotions", data={"name": "dry-wit"}, files=files)
    assert r.status_code == 202, r.text
    emotion = r.json()
    assert emotion["kind"] == "custom" and emotion["state"] == "pending"
    deadline = time.monotonic() + 120
    while (
        state := next(e for e in client.get("/v1/emotions").json()["data"] if e["id"] == emotion["id"])["state"]
    ) == "pending":
        assert time.monotonic() < deadline
        time.sleep(0.3)
    assert state == "ready"
    again = client.post("/v1/emotions", data={"name": "dry-wit"}, files=files)
    assert again.status_code == 409 and again.json()["code"] == "emotion_exists"
    builtin = client.post("/v1/emotions", data={"name": "happy"}, files=files)
    assert builtin.status_code == 422 and builtin.json()["code"] == "bad_emotion_name"

    clip = write_sample_clip(tmp_path / "v.mp4", seconds=0.2)
    for spec in ("dry-wit", emotion["id"], "dry-wit=0.5,happy=0.5"):
        with clip.open("rb") as f:
            job = client.post("/v1/edits", files={"video": f}, data={"emotion": spec})
        assert job.status_code == 202, job.text
        assert wait_final(client, job.json()["id"])["state"] == "succeeded"

    assert client.delete(f"/v1/emotions/{emotion['id']}").status_code == 204
    with clip.open("rb") as f:
        gone = client.post("/v1/edits", files={"video": f}, data={"emotion": "dry-wit"})
    assert gone.status_code == 422 and gone.json()["code"] == "unknown_emotion"
