"""No key can slow another: each test measures another key's delay beside a hostile key's load against a
baseline taken in the same run, with the limits scaled down so that it takes seconds.

The API tests run one uvicorn (PostgreSQL, local storage, the queue on Redis, no worker: nothing needs
to run) with low limits; the webhook and preview tests use the shared stack's workers. The figures are
printed (`-s`).
"""

from __future__ import annotations

import os
import statistics
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from cmet_core.media.sample import write_sample_clip
from tests.media_factory import make_audio
from tests.service.stack import REDIS_URL, free_port, postgres_database, process, wait_until

pytestmark = pytest.mark.stack  # the machine's PostgreSQL and Redis (and, below, the shared stack)

PROBE_DEADLINE_S = 2.0
DRIP_S = 6.0  # how long the dripping server keeps a probe busy without the deadline
STREAMS = 3
PROBES = 3
UPLOADS = 5
ASSETS = 4


@dataclass
class Api:
    url: str
    env: dict[str, str]

    def key(self, **limits: int) -> dict[str, str]:
        from cmet_jobs.db.session import session_scope
        from cmet_jobs.keys import create_key

        with session_scope(self.env["CMET_DATABASE_URL"]) as session:
            return {"Authorization": f"Bearer {create_key(session, 'fair', **limits).secret}"}


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    tmp = tmp_path_factory.mktemp("fair")
    port = free_port()
    with postgres_database() as database_url:
        env = {k: v for k, v in os.environ.items() if not k.startswith("CMET_")} | {
            "CMET_DATA_DIR": str(tmp / "data"),
            "CMET_DATABASE_URL": database_url,
            "CMET_BROKER_URL": REDIS_URL,
            "CMET_QUEUE": f"cmet-fair-{uuid.uuid4().hex[:8]}",
            "CMET_PREVIEW_QUEUE": f"cmet-fair-{uuid.uuid4().hex[:8]}-previews",
            "CMET_PUBLIC_URL": f"http://127.0.0.1:{port}",
            "CMET_ALLOW_PRIVATE_URLS": "true",  # the dripping server is on 127.0.0.1
            "CMET_SUBMISSION_THREADS": "4",
            "CMET_SUBMISSIONS_PER_KEY": "2",
            "CMET_URL_PROBE_TIMEOUT_S": str(PROBE_DEADLINE_S),
            "CMET_EVENT_STREAMS_PER_KEY": str(STREAMS),
            "CMET_PROBES_PER_MINUTE": str(PROBES),
            "CMET_UPLOADS_PER_MINUTE": str(UPLOADS),
            "CMET_MAX_ASSETS_PER_KEY": str(ASSETS),
        }
        args = [sys.executable, "-m", "uvicorn", "service.app:app", "--port", str(port), "--log-level", "warning"]
        with process(args, env, tmp / "api.log") as proc:
            url = f"http://127.0.0.1:{port}"
            wait_until(lambda: httpx.get(url + "/healthz").status_code == 200, 60, "API server", proc)
            yield Api(url, env)


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    return write_sample_clip(tmp_path_factory.mktemp("clips") / "talk.mp4", seconds=0.2).read_bytes()


@pytest.fixture
def drip() -> Iterator[str]:
    """A video URL whose server sends its status line one byte every 0.3 s for DRIP_S: never idle long
    enough for a per-read timeout."""

    class Drip(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            for byte in b"HTTP/1.1 206 Partial Content\r\n"[: int(DRIP_S / 0.3)]:
                try:
                    self.wfile.write(bytes([byte]))
                    self.wfile.flush()
                except OSError:  # the prober gave up
                    return
                time.sleep(0.3)

        def log_message(self, *_: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Drip)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/talk.mp4"
    finally:
        server.shutdown()


def _timed(call: Callable[[], httpx.Response]) -> tuple[httpx.Response, float]:
    started = time.monotonic()
    response = call()
    return response, time.monotonic() - started


def test_a_dripping_url_holds_up_no_other_key(api: Api, clip: bytes, drip: str) -> None:
    """Item 5: four submissions of one key whose video URL drips hold no other key's submission or
    upload; each ends at the probe's deadline or is refused (the key's cap), and a key over its rate is
    refused before its URL is probed."""
    hostile, other, over = api.key(), api.key(), api.key(max_submissions_per_minute=1)

    def submit_and_upload() -> float:
        with httpx.Client(base_url=api.url, headers=other, timeout=60) as client:
            started = time.monotonic()
            r = client.post("/v1/edits", files={"video": ("c.mp4", clip)}, data={"emotion": "happy"})
            assert r.status_code == 202, r.text
            made = client.post("/v1/uploads", json={"kind": "video", "filename": "c.mp4"}).json()
            assert client.put(made["upload_url"], content=clip).status_code == 200
            return time.monotonic() - started

    baseline = min(submit_and_upload() for _ in range(2))

    def dripping() -> tuple[httpx.Response, float]:
        body = {"video_url": drip, "emotion": "happy"}
        return _timed(lambda: httpx.post(api.url + "/v1/edits", headers=hostile, json=body, timeout=60))

    with ThreadPoolExecutor(4) as pool:
        flood = [pool.submit(dripping) for _ in range(4)]
        time.sleep(0.5)  # the hostile submissions hold their threads now
        beside = submit_and_upload()
        answers = [f.result() for f in flood]
    print(f"\nanother key's submission + upload: {beside:.2f} s beside 4 dripping URLs, {baseline:.2f} s alone")
    print("hostile answers after", [round(took, 2) for _, took in answers])
    codes = sorted(r.json()["code"] for r, _ in answers)
    assert codes == ["concurrent_submissions"] * 2 + ["url_fetch_failed"] * 2, codes
    assert all(took < PROBE_DEADLINE_S + 1.5 for _, took in answers), [took for _, took in answers]
    assert beside < baseline + 1.0, (beside, baseline)

    r = httpx.post(api.url + "/v1/edits", headers=over, files={"video": ("c.mp4", clip)}, data={"emotion": "happy"})
    assert r.status_code == 202, r.text
    refused, took = _timed(
        lambda: httpx.post(api.url + "/v1/edits", headers=over, json={"video_url": drip, "emotion": "happy"})
    )
    assert (refused.status_code, refused.json()["code"]) == (429, "rate_limit") and took < 1.0, (refused.text, took)


def _reads(headers: dict[str, str], url: str, n: int = 15) -> float:
    """Median seconds of `n` reads of one record."""
    with httpx.Client(headers=headers, timeout=30) as client:
        client.get(url)
        times = [_timed(lambda: client.get(url))[1] for _ in range(n)]
    return statistics.median(times)


def test_event_streams_are_capped_per_key(api: Api, clip: bytes) -> None:
    """Item 7: a key opens STREAMS streams and no more (429 stream_limit with Retry-After); another key's
    reads and stream go on as before."""
    hostile, other = api.key(), api.key()
    jobs = {}
    for name, headers in (("hostile", hostile), ("other", other)):
        r = httpx.post(
            api.url + "/v1/edits", headers=headers, files={"video": ("c.mp4", clip)}, data={"emotion": "sad"}
        )
        assert r.status_code == 202, r.text
        jobs[name] = f"{api.url}/v1/edits/{r.json()['id']}"  # queued for good: no worker here
    baseline = _reads(other, jobs["other"])

    opened: list[int] = []
    stop = threading.Event()
    first_events = threading.Semaphore(0)

    def follow(headers: dict[str, str], url: str) -> None:
        with httpx.Client(headers=headers, timeout=30) as client, client.stream("GET", url + "/events") as r:
            opened.append(r.status_code)
            if r.status_code == 200:
                lines = r.iter_lines()
                while not next(lines).startswith("data: "):
                    pass
            else:
                assert r.headers["retry-after"] == "10" and '"stream_limit"' in r.read().decode()
            first_events.release()
            stop.wait(30)

    threads = [threading.Thread(target=follow, args=(hostile, jobs["hostile"]), daemon=True) for _ in range(10)]
    for t in threads:
        t.start()
    try:
        for _ in threads:
            assert first_events.acquire(timeout=30)
        beside = _reads(other, jobs["other"])
        mine = threading.Thread(target=follow, args=(other, jobs["other"]), daemon=True)
        mine.start()
        assert first_events.acquire(timeout=30)
    finally:
        stop.set()
    print(
        f"\nanother key's read: median {1000 * beside:.0f} ms beside 10 streams tried, {1000 * baseline:.0f} ms alone"
    )
    assert sorted(opened) == [200] * (STREAMS + 1) + [429] * (10 - STREAMS), opened
    assert beside < baseline + 0.05, (beside, baseline)


def test_probes_emotions_and_assets_count_against_limits(api: Api, clip: bytes, tmp_path: Path) -> None:
    """Item 9: every kind of work a key can cause counts: asset records (held and per minute), probes per
    minute, and custom emotions being built (as jobs)."""
    key = api.key(max_concurrent_jobs=2)
    with httpx.Client(base_url=api.url, headers=key, timeout=30) as client:

        def upload() -> httpx.Response:
            return client.post("/v1/uploads", json={"kind": "video", "filename": "c.mp4"})

        made = [upload() for _ in range(ASSETS)]
        assert [r.status_code for r in made] == [201] * ASSETS
        held = upload()
        assert (held.status_code, held.json()["code"]) == (429, "asset_limit"), held.text
        for gone in made[-2:]:
            assert client.delete(f"/v1/uploads/{gone.json()['id']}").status_code == 204
        assert upload().status_code == 201  # a deleted asset frees its place, not its minute
        minute = upload()
        assert (minute.status_code, minute.json()["code"]) == (429, "rate_limit") and minute.headers["retry-after"]

        asset = made[0].json()
        assert client.put(asset["upload_url"], content=clip).status_code == 200
        probes = [client.post(f"/v1/uploads/{asset['id']}/probe").status_code for _ in range(PROBES + 1)]
        assert probes == [202] * PROBES + [429], probes

        speech = make_audio(tmp_path / "voice.wav").read_bytes()

        def register(name: str) -> httpx.Response:
            return client.post("/v1/emotions", data={"name": name}, files={"speech": ("v.wav", speech)})

        assert [register(f"mine{i}").status_code for i in range(2)] == [202, 202]  # pending: no worker here
        for refused in (
            register("mine2"),
            client.post("/v1/edits", json={"video_asset": asset["id"], "emotion": "happy"}),
        ):
            assert (refused.status_code, refused.json()["code"]) == (429, "concurrent_limit"), refused.text
