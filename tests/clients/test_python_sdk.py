"""The Python SDK (`clients/python`, `cmet_client`) against a real `cmet serve`: submit -> stream ->
download -> verify the webhook, the async client, typed errors, the Idempotency-Key on retries, and
its models against the contract."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tests.clients.conftest import Served
from tests.service.receiver import webhook_receiver
from tests.service.stack import wait_until

cmet_client = pytest.importorskip("cmet_client", reason="the SDK is installed with `pip install -e clients/python`")
from cmet_client import models, webhooks  # noqa: E402 (after the skip)

ROOT = Path(__file__).resolve().parents[2]


def test_submit_stream_download_and_verify_the_webhook(served: Served, tmp_path: Path) -> None:
    seen: list[tuple[str, str | None, float]] = []
    with webhook_receiver(served.webhook_secret) as hook:
        # upload_threshold=0: the clip goes through the presigned upload, as a large file would
        with cmet_client.Client(served.url, served.key, upload_threshold=0) as client:
            rotated = client.rotate_webhook_secret()  # the old secret still signs, beside the new one
            assert rotated.webhook_secret.startswith("whsec_") and rotated.webhook_secret != served.webhook_secret
            assert rotated.grace_s == 86400
            job = client.edits.create(
                video=served.clip, emotion="happy", webhook_url=hook.url, webhook_events=["edit.succeeded"]
            )
            assert job.state == "queued"
            done = client.edits.wait(job, progress=lambda j: seen.append((j.state, j.stage, j.progress)), timeout=120)
            assert done.state == "succeeded" and done.id == job.id, served.log.read_text()[-2000:]
            out = client.edits.download(done, tmp_path / "happy.mp4")
            assert out.read_bytes()[4:8] == b"ftyp"
            assert client.uploads.list()[0].uploaded, "the clip went through an asset"
        wait_until(lambda: hook.events() == ["edit.succeeded"], 30, "the webhook")
        call = hook.calls[0]

    assert seen[0][0] in ("queued", "running") and seen[-1][0] == "succeeded", seen  # a fast job may have started
    assert len(seen) == len(set(seen)), "each change reported once"
    assert len(call.headers["webhook-signature"].split()) == 2
    assert webhooks.verify(call.headers, call.raw, rotated.webhook_secret)["data"]["id"] == job.id
    event = webhooks.verify(call.headers, call.raw, served.webhook_secret)
    assert event["type"] == "edit.succeeded" and event["data"]["id"] == job.id
    with pytest.raises(cmet_client.WebhookVerificationError, match="no signature"):
        webhooks.verify(call.headers, call.raw.replace(b"succeeded", b"failed"), served.webhook_secret)
    stamp = int(call.headers["webhook-timestamp"])
    with pytest.raises(cmet_client.WebhookVerificationError, match="away from this clock"):
        webhooks.verify(call.headers, call.raw, served.webhook_secret, now=stamp + 301)
    assert webhooks.verify(call.headers, call.raw, served.webhook_secret, now=stamp + 299)["type"] == "edit.succeeded"


def test_the_async_client_makes_a_contact_sheet(served: Served, tmp_path: Path) -> None:
    async def sheet() -> tuple[models.Preview, bytes]:
        async with cmet_client.AsyncClient(served.url, served.key) as client:
            made = await client.previews.create(video=served.clip, emotions=["happy", "sad"], intensities=[1.0])
            done = await client.previews.wait(made, timeout=120, poll_s=0.3)
            path = await client.previews.download(done, tmp_path / "sheet.png")
            return done, path.read_bytes()

    done, png = asyncio.run(sheet())
    assert done.kind == "sheet" and len(done.cells) == 2
    assert png.startswith(b"\x89PNG")


def test_errors_carry_the_problem_code(served: Served, monkeypatch: pytest.MonkeyPatch) -> None:
    with cmet_client.Client(served.url, "cmet_not_a_key") as client:
        with pytest.raises(cmet_client.ApiError) as refused:
            client.edits.list()
    assert (refused.value.status, refused.value.code) == (401, "unauthorized")

    monkeypatch.setenv("CMET_API_KEY", served.key)
    monkeypatch.setenv("CMET_SERVER", served.url)
    with cmet_client.Client() as client:
        with pytest.raises(cmet_client.ApiError) as unknown:
            client.edits.create(video=served.clip, emotion="no_such_feeling")
        assert unknown.value.code == "unknown_emotion"
        with pytest.raises(cmet_client.InvalidRequestError):
            client.edits.create(video=served.clip, emotion="happy", intensty=2)  # misspelt: refused before sending
        with pytest.raises(cmet_client.ApiError) as missing:
            client.edits.wait("edt_0000", timeout=5)
        assert missing.value.code == "edit_not_found"
        canceled = client.edits.cancel(client.edits.create(video=served.clip, emotion="happy", preview_s=0.2).id)
        with pytest.raises(cmet_client.JobFailedError) as ended:
            client.edits.wait(canceled, timeout=60)
        assert (ended.value.job_id, ended.value.state) == (canceled.id, "canceled")
    monkeypatch.delenv("CMET_API_KEY")
    with pytest.raises(cmet_client.CmetError, match="CMET_API_KEY"):
        cmet_client.Client()


@pytest.fixture
def flaky_server() -> Iterator[tuple[str, list[str]]]:
    """Answers the first POST with 503 (Retry-After: 0), then 202 with a job: records each Idempotency-Key."""
    keys: list[str] = []
    job = json.loads((ROOT / "tests/clients/job.json").read_text())

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 (http.server's name)
            self.rfile.read(int(self.headers.get("content-length", 0)))
            keys.append(self.headers.get("idempotency-key", ""))
            body = json.dumps(job).encode() if len(keys) > 1 else b'{"code":"queue_unavailable","detail":"x"}'
            self.send_response(202 if len(keys) > 1 else 503)
            self.send_header("retry-after", "0")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", keys
    finally:
        server.shutdown()
        server.server_close()


def test_a_retried_submission_keeps_its_idempotency_key(flaky_server: tuple[str, list[str]]) -> None:
    url, keys = flaky_server
    with cmet_client.Client(url, "cmet_x") as client:
        started = time.monotonic()
        job = client.edits.create(video_url="https://example.com/talk.mp4", emotion="happy")
    assert job.id == "edt_0123" and len(keys) == 2 and keys[0] == keys[1] and keys[0].startswith("cmet-client-")
    assert time.monotonic() - started < 5


def _script(name: str, monkeypatch: pytest.MonkeyPatch) -> Any:
    """One of the client's build scripts (`clients/python/<name>.py`), loaded as a module; their folder is
    on the path, as when they run, for the one to import the other."""
    import importlib.util  # only the drift tests load scripts

    monkeypatch.syspath_prepend(str(ROOT / "clients/python"))
    spec = importlib.util.spec_from_file_location(name, ROOT / f"clients/python/{name}.py")
    assert spec is not None and spec.loader is not None
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    return script


def test_the_models_are_generated_from_the_contract(monkeypatch: pytest.MonkeyPatch) -> None:
    """`clients/python/cmet_client/models.py` is what the generator makes of `openapi.yaml` today."""
    pytest.importorskip("datamodel_code_generator", reason="datamodel-code-generator (dev extra) makes the models")
    generator = _script("generate_models", monkeypatch)
    assert generator.render() == generator.TARGET.read_text(), "run python clients/python/generate_models.py"


def test_the_sync_client_is_made_from_the_async_one(monkeypatch: pytest.MonkeyPatch) -> None:
    """`cmet_client/client.py` is what unasync makes of `aio.py` today: one source for both clients."""
    pytest.importorskip("unasync", reason="unasync (dev extra) makes the sync client")
    generator = _script("unasync_client", monkeypatch)
    assert generator.render() == generator.TARGET.read_text(), "run python clients/python/unasync_client.py"
    assert [n for n in dir(cmet_client.Client) if not n.startswith("_")] == [
        n.replace("aclose", "close") for n in dir(cmet_client.AsyncClient) if not n.startswith("_")
    ]


def test_a_batch_in_the_sync_and_the_async_client(served: Served) -> None:
    changes: list[tuple[str, str]] = []
    with cmet_client.Client(served.url, served.key) as client:
        asset = client.uploads.create(served.clip)
        edits = [{"video": asset, "emotion": "happy"}, {"video": asset, "emotion": "sad", "intensity": 0.5}]
        batch = client.batches.create(edits, idempotency_key="sdk-batch")
        assert batch.id.startswith("bat_") and len(batch.edit_ids) == 2 and batch.total == 2
        done = client.batches.wait(batch, progress=lambda j: changes.append((j.id, j.state)), timeout=120)
        with pytest.raises(cmet_client.InvalidRequestError):
            client.batches.create([{"video": asset, "emotoin": "happy"}])  # checked before sending
        sad = client.edits.get(done.edit_ids[1])

    async def again() -> tuple[models.Batch, models.Batch]:
        async with cmet_client.AsyncClient(served.url, served.key) as client:
            replay = await client.batches.create(edits, idempotency_key="sdk-batch")
            return replay, await client.batches.wait(replay.id, timeout=30)

    replay, waited = asyncio.run(again())
    assert (done.state, done.counts.succeeded, done.completed_at is not None) == ("completed", 2, True)
    assert {job_id for job_id, state in changes if state == "succeeded"} == set(batch.edit_ids)
    assert (sad.emotion, sad.intensity) == ("sad", 0.5)
    assert replay.id == batch.id and waited == done, "same key, same body: the same batch"


def test_prefer_wait_answers_with_the_finished_job(served: Served) -> None:
    import httpx

    from service.prefer import wait_seconds

    assert [wait_seconds(h, 60) for h in ("respond-async, wait=10", "wait=600", "wait=x", None)] == [10, 60, 0, 0]
    with cmet_client.Client(served.url, served.key) as client:
        sheet = client.previews.create(video=served.clip, emotions=["happy"], intensities=[1.0], wait_s=60)
    assert sheet.state == "succeeded" and sheet.sheet_url, "one request: submitted, made and answered"

    auth = {"Authorization": f"Bearer {served.key}"}
    body = {"emotions": "sad", "intensities": "1"}
    for asked, status, applied in (("wait=9999", 200, "wait=60"), ("wait=0", 202, None)):
        with served.clip.open("rb") as f:
            r = httpx.post(
                f"{served.url}/v1/previews", headers=auth | {"Prefer": asked}, files={"video": f}, data=body, timeout=90
            )
        assert (r.status_code, r.headers.get("preference-applied")) == (status, applied), r.text


def test_a_dry_run_estimates_and_stores_nothing(served: Served) -> None:
    with cmet_client.Client(served.url, served.key) as client:
        before = [job.id for job in client.edits.list(limit=100)]
        estimate = client.edits.estimate(video=served.clip, emotion="happy", preview_s=0.2)
        with pytest.raises(cmet_client.ApiError) as refused:
            client.edits.estimate(video=served.clip, emotion="no_such_feeling")
        after = [job.id for job in client.edits.list(limit=100)]
    assert (estimate.frames, estimate.width, estimate.height) == (5, 256, 256)
    assert estimate.measured_jobs >= 1 and estimate.estimated_seconds is not None and estimate.estimated_seconds > 0
    assert refused.value.code == "unknown_emotion", "a dry run checks what a submission checks"
    assert after == before
