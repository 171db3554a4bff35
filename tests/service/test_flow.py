"""A client's whole flow against the running service: upload or submit, poll, download, cancel, delete."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest

from cmet_core.media.sample import write_sample_clip
from cmet_core.media.video import probe
from tests.service.conftest import new_key
from tests.service.stack import Stack

FINAL = {"succeeded", "failed", "canceled"}


def wait_final(client: httpx.Client, job_id: str, timeout: float = 120, path: str = "/v1/edits") -> dict:  # type: ignore[type-arg]
    """The job (read at `path`) once it is final."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = client.get(f"{path}/{job_id}").json()
        if job["state"] in FINAL:
            return job  # type: ignore[no-any-return]
        time.sleep(0.2)
    raise TimeoutError(f"job {job_id} did not finish: {job}")


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_sample_clip(tmp_path_factory.mktemp("clips") / "talk.mp4", seconds=0.4)


def test_multipart_submit_poll_download(client: httpx.Client, clip: Path, tmp_path: Path) -> None:
    with clip.open("rb") as f:
        r = client.post(
            "/v1/edits", files={"video": ("talk.mp4", f, "video/mp4")}, data={"emotion": "happy", "intensity": "0.8"}
        )
    assert r.status_code == 202, r.text
    job = r.json()
    assert r.headers["location"] == f"/v1/edits/{job['id']}" and job["state"] == "queued"
    done = wait_final(client, job["id"])
    assert done["state"] == "succeeded", done
    assert done["progress"] == 1.0 and done["result"]["frames"] == 10 and done["output_url"]
    video = httpx.get(done["output_url"], timeout=30)
    assert video.status_code == 200
    (tmp_path / "out.mp4").write_bytes(video.content)
    assert probe(tmp_path / "out.mp4").frame_count == 10
    again = client.get(f"/v1/edits/{job['id']}").json()
    assert (
        httpx.get(again["output_url"], timeout=30).content == video.content
    )  # signed anew on each read, still the same file


def test_enhanced_edit_comes_back_restored_at_twice_the_size(client: httpx.Client, clip: Path, tmp_path: Path) -> None:
    """`enhance` through the API: the worker's batched restorer doubles the face crop and restores it."""
    with clip.open("rb") as f:
        data = {"emotion": "happy", "enhance": "on", "enhance_strength": "0.8", "upscale": "2"}
        r = client.post("/v1/edits", files={"video": ("talk.mp4", f, "video/mp4")}, data=data)
    assert r.status_code == 202, r.text
    done = wait_final(client, r.json()["id"])
    assert done["state"] == "succeeded", done
    (tmp_path / "out.mp4").write_bytes(httpx.get(done["output_url"], timeout=30).content)
    info = probe(tmp_path / "out.mp4")
    assert (info.width, info.height, info.frame_count) == (512, 512, 10)


def test_whole_flow_upload_submit_webhook_download(stack: Stack, clip: Path, tmp_path: Path) -> None:
    """A user's whole flow: presigned upload, submit by asset with a webhook, the signed
    `edit.succeeded` arrives, its output URL downloads the edited video."""
    from tests.service.conftest import new_key_and_webhook_secret
    from tests.service.receiver import webhook_receiver

    secret, webhook_secret = new_key_and_webhook_secret(stack, "flow")
    with (
        httpx.Client(base_url=stack.api_url, headers={"Authorization": f"Bearer {secret}"}, timeout=60) as client,
        webhook_receiver(webhook_secret) as hook,
    ):
        body = {"kind": "video", "size": clip.stat().st_size, "filename": "talk.mp4", "content_type": "video/mp4"}
        r = client.post("/v1/uploads", json=body)
        assert r.status_code == 201, r.text
        upload = r.json()
        put = httpx.put(upload["upload_url"], content=clip.read_bytes(), headers=upload["headers"], timeout=30)
        assert put.status_code == 200, put.text
        r = client.post(
            "/v1/edits",
            json={
                "video_asset": upload["id"],
                "emotion": "happy=0.6,surprised=0.4",
                "webhook_url": hook.url,
                "webhook_events": ["edit.succeeded", "edit.failed"],
            },
        )
        assert r.status_code == 202, r.text
        deadline = time.monotonic() + 120
        while "edit.succeeded" not in hook.events():
            assert time.monotonic() < deadline and "edit.failed" not in hook.events(), hook.events()
            time.sleep(0.2)
        (call,) = hook.calls
        assert call.verified and call.body["data"]["id"] == r.json()["id"] and call.body["data"]["state"] == "succeeded"
        video = httpx.get(call.body["data"]["output_url"], timeout=30)
        assert video.status_code == 200
        (tmp_path / "out.mp4").write_bytes(video.content)
        assert probe(tmp_path / "out.mp4").frame_count == 10


def test_list_filter_and_pagination(client: httpx.Client, clip: Path) -> None:
    ids = []
    for _ in range(3):
        with clip.open("rb") as f:
            ids.append(client.post("/v1/edits", files={"video": f}, data={"emotion": "sad"}).json()["id"])
    for job_id in ids:
        wait_final(client, job_id)
    page = client.get("/v1/edits", params={"limit": 2}).json()
    assert len(page["data"]) == 2 and page["next_cursor"]
    rest = client.get("/v1/edits", params={"limit": 2, "cursor": page["next_cursor"]}).json()
    seen = [j["id"] for j in page["data"] + rest["data"]]
    assert len(seen) == len(set(seen)) and ids[-1] == seen[0]
    ok = client.get("/v1/edits", params={"state": "succeeded", "limit": 100}).json()["data"]
    assert all(j["state"] == "succeeded" for j in ok) and set(ids) <= {j["id"] for j in ok}


@pytest.mark.usefixtures("stack")
def test_cancel_and_delete(client: httpx.Client, tmp_path: Path) -> None:
    long_clip = write_sample_clip(tmp_path / "long.mp4", seconds=12)
    with long_clip.open("rb") as f:
        job = client.post("/v1/edits", files={"video": f}, data={"emotion": "angry"}).json()
    deadline = time.monotonic() + 60
    while client.get(f"/v1/edits/{job['id']}").json()["state"] == "queued" and time.monotonic() < deadline:
        time.sleep(0.1)
    assert client.delete(f"/v1/edits/{job['id']}").status_code in (409, 204)
    r = client.post(f"/v1/edits/{job['id']}/cancel")
    assert r.status_code == 200
    done = wait_final(client, job["id"], timeout=60)
    assert done["state"] in ("canceled", "succeeded")
    assert client.delete(f"/v1/edits/{job['id']}").status_code == 204
    assert client.get(f"/v1/edits/{job['id']}").status_code == 404


def test_another_keys_job_is_not_found(client: httpx.Client, stack: Stack, clip: Path) -> None:
    with clip.open("rb") as f:
        job = client.post("/v1/edits", files={"video": f}, data={"emotion": "happy"}).json()
    other = {"Authorization": f"Bearer {new_key(stack, 'other')}"}
    r = httpx.get(f"{stack.api_url}/v1/edits/{job['id']}", headers=other)
    assert r.status_code == 404 and r.json()["code"] == "edit_not_found"
    assert httpx.post(f"{stack.api_url}/v1/edits/{job['id']}/cancel", headers=other).status_code == 404


def test_idempotency_key(client: httpx.Client, clip: Path) -> None:
    body = {"emotion": "happy"}
    headers = {"Idempotency-Key": "abc-123"}
    with clip.open("rb") as f:
        first = client.post("/v1/edits", files={"video": f}, data=body, headers=headers)
    with clip.open("rb") as f:
        second = client.post("/v1/edits", files={"video": f}, data=body, headers=headers)
    assert first.status_code == second.status_code == 202 and first.json()["id"] == second.json()["id"]
    with clip.open("rb") as f:
        third = client.post("/v1/edits", files={"video": f}, data={"emotion": "sad"}, headers=headers)
    assert third.status_code == 422 and third.json()["code"] == "idempotency_key_reused"


def test_health_ready_models_emotions(client: httpx.Client) -> None:
    assert client.get("/healthz").json()["status"] == "ok"
    deadline = time.monotonic() + 30
    while (ready := client.get("/readyz")).status_code != 200 and time.monotonic() < deadline:
        time.sleep(0.5)  # the worker's first beat comes a few seconds after it starts
    assert ready.status_code == 200, ready.text
    assert set(ready.json()["checks"]) == {"database", "broker", "storage", "workers"}
    models = client.get("/v1/models").json()
    kinds = {m["kind"] for m in models["models"]}
    assert models["name"] == "tiny" and kinds == {"edtalk", "connector", "emotion2vec", "gfpgan", "audio2lip"}
    names = {e["name"] for e in client.get("/v1/emotions").json()["data"]}
    assert {"happy", "sarcastic", "charismatic"} <= names and len(names) == 14


def test_video_by_url(client: httpx.Client, clip: Path) -> None:
    """The API follows the URL at submission (a dead one is a 422 at once); the worker fetches it
    through the SSRF guard again (the test stack allows LAN targets), so a file gone by then fails the job."""
    import functools
    import threading
    from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

    class Handler(SimpleHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path == "/gone-later.mp4":  # there for the API's probe (a range request), gone for the worker
                if "Range" in self.headers:
                    self.send_response(206)
                    self.send_header("Content-Range", "bytes 0-0/1000")
                    self.send_header("Content-Length", "1")
                    self.end_headers()
                    self.wfile.write(b"\x00")
                else:
                    self.send_error(404)
                return
            super().do_GET()

    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler, directory=str(clip.parent)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        base = f"http://127.0.0.1:{server.server_address[1]}"
        ok = client.post("/v1/edits", json={"video_url": f"{base}/{clip.name}", "emotion": "surprised"})
        missing = client.post("/v1/edits", json={"video_url": f"{base}/nothing.mp4", "emotion": "surprised"})
        gone = client.post("/v1/edits", json={"video_url": f"{base}/gone-later.mp4", "emotion": "surprised"})
        assert ok.status_code == gone.status_code == 202, (ok.text, gone.text)
        assert (missing.status_code, missing.json()["code"]) == (422, "url_fetch_failed")
        assert wait_final(client, ok.json()["id"])["state"] == "succeeded"
        failed = wait_final(client, gone.json()["id"])
        assert failed["state"] == "failed" and failed["error"]["code"] == "url_fetch_failed"
    finally:
        server.shutdown()


def test_emotion_from_the_clients_speech(client: httpx.Client, clip: Path, test_data: Path) -> None:
    clips = sorted((test_data / "speech" / "MEAD" / "surprised").glob("*.wav"))
    with clip.open("rb") as f:
        parts = [("video", ("talk.mp4", f.read(), "video/mp4"))] + [
            ("speech", (p.name, p.read_bytes(), "audio/wav")) for p in clips
        ]
    r = client.post("/v1/edits", files=parts, data={"intensity": "1.5"})
    assert r.status_code == 202, r.text
    assert wait_final(client, r.json()["id"])["state"] == "succeeded"


def test_dub_a_video_with_a_speech_track(client: httpx.Client, clip: Path, test_data: Path, tmp_path: Path) -> None:
    import soundfile

    from tests.media_factory import make_speech

    wav, _ = soundfile.read(str(test_data / "video" / "mead_W009_038.wav"), dtype="float32")
    line = make_speech(tmp_path / "line.mp3", wav[: int(0.8 * 16000)])  # 0.8 s: longer than the 0.4 s clip
    with clip.open("rb") as video, line.open("rb") as track:
        r = client.post(
            "/v1/edits",
            files={"video": ("talk.mp4", video, "video/mp4"), "speech_track": ("line.mp3", track, "audio/mpeg")},
            data={"emotion": "happy", "lips": "speech", "pose_fill": "loop"},
        )
    assert r.status_code == 202, r.text
    done = wait_final(client, r.json()["id"])
    assert done["state"] == "succeeded", done
    assert done["result"]["frames"] == 20 and done["result"]["fps"] == 25.0
    (tmp_path / "dub.mp4").write_bytes(httpx.get(done["output_url"], timeout=30).content)
    out = probe(tmp_path / "dub.mp4")
    assert out.frame_count == 20 and out.has_audio and abs(out.duration_s - 0.8) <= 0.04 + 0.03


def test_animate_a_photo_with_a_speech_track(client: httpx.Client, test_data: Path, tmp_path: Path) -> None:
    import soundfile

    wav, rate = soundfile.read(str(test_data / "video" / "mead_W009_038.wav"), dtype="float32")
    soundfile.write(str(tmp_path / "line.wav"), wav[: int(0.4 * rate)], rate)
    photo = test_data / "faces" / "uncropped_face.jpg"
    with photo.open("rb") as image, (tmp_path / "line.wav").open("rb") as track:
        r = client.post(
            "/v1/edits",
            files={"video": ("me.jpg", image, "image/jpeg"), "speech_track": ("line.wav", track, "audio/wav")},
            data={"emotion": "sarcastic", "lips": "speech"},
        )
    assert r.status_code == 202, r.text
    done = wait_final(client, r.json()["id"])
    assert done["state"] == "succeeded", done
    assert (done["result"]["frames"], done["result"]["width"], done["result"]["height"]) == (10, 840, 1024)
