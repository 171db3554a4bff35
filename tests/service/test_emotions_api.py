"""Custom emotions: registered from speech clips, built by the worker, then usable by name, id or in blends."""

from __future__ import annotations

import re
import time
from pathlib import Path

import httpx

from cmet_core.media.sample import write_sample_clip
from tests.media_factory import make_audio
from tests.service.stack import Stack
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


def test_an_emotion_deleted_while_its_build_fetches_its_clips_ends_cleanly(
    stack: Stack, client: httpx.Client, tmp_path: Path
) -> None:
    """Item 18: a pending emotion deleted while the worker fetches its clips from S3 (8 clips of 20 s: the
    test deletes once the first is in the worker's scratch folder). The build ends as `deleted`, with one
    log line and no traceback; before, the next clip's download raised `StorageError` out of the task."""
    from tests.service.stack import wait_until

    settings = stack.settings()
    speech = make_audio(tmp_path / "long.wav", seconds=20.0).read_bytes()
    log = stack.logs / "worker.log"
    seen = log.stat().st_size
    r = client.post(
        "/v1/emotions", data={"name": "going"}, files=[("speech", (f"s{i}.wav", speech, "audio/wav")) for i in range(8)]
    )
    assert r.status_code == 202, r.text
    emotion = r.json()["id"]
    fetching = lambda: [p for p in settings.scratch_root.glob(f"*{emotion}-*") if p.is_dir()]  # noqa: E731
    wait_until(lambda: any((folder / "speech0").exists() for folder in fetching()), 60, "the build's first clip")
    deleted = client.delete(f"/v1/emotions/{emotion}")
    assert deleted.status_code == 204, deleted.text
    ended = re.compile(r"build_emotion\[[^]]+\] (succeeded in|raised)")
    wait_until(lambda: ended.search(_tail(log, seen)), 60, "the build's end")
    lines = _tail(log, seen)
    assert "Traceback" not in lines and "raised unexpected" not in lines, lines[-3000:]
    assert "'deleted'" in lines, lines[-3000:]
    assert emotion not in {e["id"] for e in client.get("/v1/emotions").json()["data"]}


def _tail(log: Path, offset: int) -> str:
    with log.open("rb") as f:
        f.seek(offset)
        return f.read().decode(errors="replace")
