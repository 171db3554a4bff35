"""No key can slow another: each test measures another key's delay beside a hostile key's load against a
baseline taken in the same run, with the limits scaled down so that it takes seconds.

The API tests run one uvicorn (PostgreSQL, local storage, the queue on Redis, no worker: nothing needs
to run) with low limits; the webhook and preview tests use the shared stack's workers. The figures are
printed (`-s`).
"""

from __future__ import annotations

import os
import signal
import statistics
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import httpx
import pytest

from cmet_core.media.sample import write_sample_clip
from tests.media_factory import make_audio
from tests.service.servers import http_server
from tests.service.stack import REDIS_URL, Stack, free_port, postgres_database, process, wait_until

pytestmark = pytest.mark.stack  # the machine's PostgreSQL and Redis (and, below, the shared stack)

PROBE_DEADLINE_S = 2.0
DRIP_S = 6.0  # how long the dripping server keeps a probe busy without the deadline
STREAMS = 3
PROBES = 3
UPLOADS = 5
ASSETS = 4
LEASE_S = 2.0  # a killed API process's slots free within this


@dataclass
class Api:
    url: str
    env: dict[str, str]
    second: str  # another API process on the same database and Redis
    second_process: subprocess.Popen  # type: ignore[type-arg]

    def ready(self) -> str:
        """The second process's URL, once it answers."""
        wait_until(lambda: httpx.get(self.second + "/healthz").status_code == 200, 60, "API 2", self.second_process)
        return self.second

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
            "CMET_SLOT_LEASE_S": str(LEASE_S),
        }
        second = free_port()
        with _api_process(env, port, tmp / "api.log") as (url, first):
            wait_until(lambda: httpx.get(url + "/healthz").status_code == 200, 60, "API server", first)
            # started once the first has migrated the database, and answering before any test measures time
            with _api_process(env, second, tmp / "api2.log") as (second_url, proc):
                api = Api(url, env, second_url, proc)
                api.ready()
                yield api


@contextmanager
def _api_process(env: dict[str, str], port: int, log: Path) -> Iterator[tuple[str, subprocess.Popen]]:  # type: ignore[type-arg]
    """An API process (uvicorn) on `port` with `env`, starting."""
    args = [sys.executable, "-m", "uvicorn", "service.app:app", "--port", str(port), "--log-level", "warning"]
    with process(args, env | {"CMET_PUBLIC_URL": f"http://127.0.0.1:{port}"}, log) as proc:
        yield f"http://127.0.0.1:{port}", proc


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

    with http_server(Drip) as url:
        yield url + "/talk.mp4"


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
            made = client.post("/v1/uploads", json={"kind": "video", "size": len(clip), "filename": "c.mp4"}).json()
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


def test_caps_count_across_api_processes(api: Api, clip: bytes, drip: str) -> None:
    """The per-key caps on streams and submissions hold across API processes (slots in Redis): streams
    or submissions held by a second process count in the first; once the second is killed (-9, nothing
    given back), its slots free within their lease."""
    key = api.key()
    r = httpx.post(api.url + "/v1/edits", headers=key, files={"video": ("c.mp4", clip)}, data={"emotion": "sad"})
    assert r.status_code == 202, r.text
    events_path = f"/v1/edits/{r.json()['id']}/events"  # queued for good: no worker here

    def stream_status(client: httpx.Client, url: str) -> int:
        with client.stream("GET", url + events_path) as answer:
            return answer.status_code

    second = api.ready()
    with ExitStack() as streams, httpx.Client(headers=key, timeout=10) as client:
        for _ in range(STREAMS):  # open on the second process while the context stays open
            assert streams.enter_context(client.stream("GET", second + events_path)).status_code == 200
        assert stream_status(client, api.url) == 429

        with ThreadPoolExecutor(2) as pool:
            body = {"video_url": drip, "emotion": "happy"}
            held = [pool.submit(client.post, second + "/v1/edits", json=body) for _ in range(2)]
            time.sleep(0.5)  # both submissions are on the second process's threads now
            refused = client.post(api.url + "/v1/edits", files={"video": ("c.mp4", clip)}, data={"emotion": "sad"})
            assert [f.result().json()["code"] for f in held] == ["url_fetch_failed"] * 2
        assert (refused.status_code, refused.json()["code"]) == (429, "concurrent_submissions"), refused.text

        os.killpg(api.second_process.pid, signal.SIGKILL)
        killed = time.monotonic()
        wait_until(lambda: stream_status(client, api.url) == 200, LEASE_S + 5, "the killed process's slots")
        freed = time.monotonic() - killed
    print(f"\na killed API process's stream slots freed after {freed:.2f} s (lease {LEASE_S:g} s)")
    assert freed < LEASE_S + 1.0, freed


def test_revoking_a_key_ends_its_open_streams(api: Api, clip: bytes) -> None:
    """Item 12: a revoked key's open event stream ends with an `unauthorized` error event within a poll or
    two, and sends nothing more (no freshly signed output URL)."""
    from cmet_jobs.db.models import ApiKey
    from cmet_jobs.db.session import session_scope
    from cmet_jobs.keys import hash_key, revoke_key

    headers = api.key()
    r = httpx.post(api.url + "/v1/edits", headers=headers, files={"video": ("c.mp4", clip)}, data={"emotion": "sad"})
    assert r.status_code == 202, r.text
    with httpx.Client(headers=headers, timeout=3) as client:  # a stream left open: a read timeout, not a hang
        with client.stream("GET", f"{api.url}/v1/edits/{r.json()['id']}/events") as stream:
            lines = stream.iter_lines()
            assert next(lines) == "id: 1" and next(lines) == "event: state"
            with session_scope(api.env["CMET_DATABASE_URL"]) as session:
                secret = headers["Authorization"].removeprefix("Bearer ")
                key_id = session.query(ApiKey.id).filter(ApiKey.key_hash == hash_key(secret)).scalar()
                assert revoke_key(session, key_id)
            revoked = time.monotonic()
            rest = [line for line in lines if line.startswith(("event:", "data:"))]
            took = time.monotonic() - revoked
    print(f"\na revoked key's stream ended {took:.2f} s after the revocation")
    assert rest[-2:-1] == ["event: error"] and '"unauthorized"' in rest[-1], rest
    assert took < 2.0, took


def test_probes_emotions_and_assets_count_against_limits(api: Api, clip: bytes, tmp_path: Path) -> None:
    """Item 9: every kind of work a key can cause counts: asset records (held and per minute), probes per
    minute, and custom emotions being built (as jobs)."""
    key = api.key(max_concurrent_jobs=2)
    with httpx.Client(base_url=api.url, headers=key, timeout=30) as client:

        def upload() -> httpx.Response:
            return client.post("/v1/uploads", json={"kind": "video", "size": len(clip), "filename": "c.mp4"})

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


# --- on the shared stack's workers -------------------------------------------------------------------


def test_a_slow_receiver_delays_no_other_keys_webhooks(stack: Stack) -> None:
    """Item 6: twelve of one key's deliveries to a receiver that trickles its answer hold at most
    `webhook_key_concurrency` (2) of the webhook worker's 4 threads; another key's delivery arrives as
    fast as it does alone."""
    from cmet_jobs import webhooks
    from cmet_jobs.db.models import JobRow, WebhookDelivery, now
    from cmet_jobs.db.session import session_scope
    from cmet_jobs.keys import create_key
    from cmet_jobs.states import JobState
    from tests.records import make_job
    from tests.service.receiver import slow_receiver, webhook_receiver

    settings, db = stack.settings(), stack.env["CMET_DATABASE_URL"]
    with session_scope(db) as session:
        hostile, other = create_key(session, "slow-hooks").record, create_key(session, "hooks").record
        keys = {"hostile": (hostile.id, hostile.webhook_secret), "other": (other.id, other.webhook_secret)}
    jobs = {name: make_job(db, key_id, state=JobState.SUCCEEDED) for name, (key_id, _) in keys.items()}

    def deliveries(name: str, url: str, n: int) -> list[str]:
        with session_scope(db) as session:
            rows = [
                WebhookDelivery(
                    job_id=jobs[name],
                    key_id=keys[name][0],
                    event="edit.succeeded",
                    msg_id=f"msg_{uuid.uuid4().hex}",
                    url=url,
                    payload={"type": "edit.succeeded", "timestamp": now().isoformat(), "data": {"id": jobs[name]}},
                )
                for _ in range(n)
            ]
            session.add_all(rows)
            session.flush()
            return [r.id for r in rows]

    try:
        with webhook_receiver(keys["other"][1]) as hook:

            def delay() -> float:
                started, before = time.monotonic(), len(hook.calls)
                webhooks.dispatch(settings, deliveries("other", hook.url, 1))
                while len(hook.calls) == before and time.monotonic() < started + 5:
                    time.sleep(0.01)
                return time.monotonic() - started

            baseline = min(delay() for _ in range(2))
            with slow_receiver(every_s=0.5, for_s=20.0) as slow:
                webhooks.dispatch(settings, deliveries("hostile", slow.url, 12))
                wait_until(lambda: slow.calls >= 2, 10, "the slow receiver's first calls")
                time.sleep(0.5)  # any more of its deliveries would have started by now
                beside, at_once = delay(), slow.calls
        print(f"\nanother key's webhook: {beside:.2f} s beside a slow receiver, {baseline:.2f} s alone")
        assert at_once == settings.webhook_key_concurrency, at_once
        assert beside < 1.0 and beside < baseline + 0.5, (beside, baseline)
        assert all(c.verified for c in hook.calls)
    finally:
        with session_scope(db) as session:  # the deliveries go with their job
            session.delete(session.get(JobRow, jobs["hostile"]))


FLOOD_PROBES, FLOOD_BUILDS, FLOOD_ASSETS = 20, 4, 65  # over the stack's limits: 10 probes, 1 job, 60 records


def test_floods_of_probes_emotions_and_assets_delay_no_other_key(stack: Stack, tmp_path: Path) -> None:
    """Item 9: one key sends probes, custom emotion registrations and asset records as fast as it can; each
    kind stops at its limit (429), and another key's probe waits behind no more than the limits let in:
    `probes_per_minute` probes (each as long as the other key's probe alone) and one build (its
    `max_concurrent_jobs`, 1; as long as a build alone). Without the limits it waited behind all the
    probes sent."""
    from tests.service.conftest import new_key

    settings = stack.settings()
    video = write_sample_clip(tmp_path / "c.mp4", seconds=0.2).read_bytes()
    speech = make_audio(tmp_path / "v.wav").read_bytes()

    def client(name: str, **limits: int) -> httpx.Client:
        headers = {"Authorization": f"Bearer {new_key(stack, name, **limits)}"}
        return httpx.Client(base_url=stack.api_url, headers=headers, timeout=60)

    def uploaded(c: httpx.Client) -> str:
        made = c.post("/v1/uploads", json={"kind": "video", "size": len(video)}).json()
        assert httpx.put(made["upload_url"], content=video).status_code == 200
        return str(made["id"])

    def until(check: Callable[[], bool], started: float) -> float:
        while not check():
            assert time.monotonic() < started + 120, "not done in 120 s"
            time.sleep(0.05)
        return time.monotonic() - started

    def probe(c: httpx.Client, asset: str) -> float:
        started = time.monotonic()
        assert c.post(f"/v1/uploads/{asset}/probe").status_code == 202
        return until(lambda: c.get(f"/v1/uploads/{asset}/probe").json()["state"] != "pending", started)

    def register(c: httpx.Client, name: str) -> httpx.Response:
        return c.post("/v1/emotions", data={"name": name}, files={"speech": ("v.wav", speech)})

    with client("probe") as other, client("flood", max_concurrent_jobs=1) as hostile:
        mine = uploaded(other)
        baseline = min(probe(other, mine) for _ in range(2))
        started = time.monotonic()  # the first build also loads the speech model: it is not timed beside
        emotion = register(other, "alone").json()["id"]
        build = until(lambda: _emotion_state(other, emotion) != "pending", started)

        target = uploaded(hostile)
        flood_started = time.monotonic()
        probes = [hostile.post(f"/v1/uploads/{target}/probe").status_code for _ in range(FLOOD_PROBES)]
        builds = [register(hostile, f"flood{i}").status_code for i in range(FLOOD_BUILDS)]
        record = {"kind": "video", "size": len(video)}
        assets = [hostile.post("/v1/uploads", json=record).status_code for _ in range(FLOOD_ASSETS)]
        flood_s = time.monotonic() - flood_started
        beside = probe(other, mine)
    allowed = settings.probes_per_minute * baseline + build
    print(
        f"\nanother key's probe: {beside:.2f} s beside one key's flood ({probes.count(202)} of {FLOOD_PROBES} probes, "
        f"{builds.count(202)} of {FLOOD_BUILDS} emotion builds, {assets.count(201)} of {FLOOD_ASSETS} asset records in "
        f"{flood_s:.1f} s), {baseline:.2f} s alone (a build alone: {build:.2f} s)"
    )
    assert probes.count(202) <= settings.probes_per_minute and probes[-1] == 429, probes
    assert 1 <= builds.count(202) < len(builds) and builds[-1] == 429, builds
    assert assets.count(201) == settings.uploads_per_minute - 1 and assets[-1] == 429, assets
    assert beside < baseline + allowed + 2.0, (beside, baseline, allowed)


def _emotion_state(client: httpx.Client, emotion_id: str) -> str:
    return str(next(e for e in client.get("/v1/emotions").json()["data"] if e["id"] == emotion_id)["state"])


def test_previews_cannot_starve_another_keys_edit(stack: Stack, tmp_path: Path) -> None:
    """Item 8: one key keeps the preview queue full (within its limits); another key's edit lets at most
    `previews_before_edit` (4) previews start before it, and waits about that many previews longer than
    it does alone."""
    from datetime import datetime

    from tests.service.conftest import new_key
    from tests.service.test_flow import wait_final

    ahead = 4  # CMET_PREVIEWS_BEFORE_EDIT, its default
    video = write_sample_clip(tmp_path / "c.mp4", seconds=0.2).read_bytes()
    hostile = httpx.Client(base_url=stack.api_url, headers={"Authorization": f"Bearer {new_key(stack, 'p')}"})
    other = httpx.Client(base_url=stack.api_url, headers={"Authorization": f"Bearer {new_key(stack, 'e')}"})

    def run(client: httpx.Client, path: str, data: dict[str, object]) -> tuple[dict, float]:  # type: ignore[type-arg]
        started = time.monotonic()
        r = client.post(path, files={"video": ("c.mp4", video)}, data=data, timeout=60)
        assert r.status_code == 202, r.text
        done = wait_final(client, r.json()["id"], timeout=60, path=path)
        assert done["state"] == "succeeded", done
        return done, time.monotonic() - started

    def edit() -> tuple[dict, float]:  # type: ignore[type-arg]
        return run(other, "/v1/edits", {"emotion": "happy"})

    baseline = min(edit()[1], edit()[1])  # the first may wait for a (re)started worker's models
    preview = run(hostile, "/v1/previews", {"emotions": ["sad"]})[1]
    stop, accepted = threading.Event(), []

    def flood() -> None:
        deadline = time.monotonic() + FLOOD_S
        while not stop.is_set() and time.monotonic() < deadline:
            r = hostile.post("/v1/previews", files={"video": ("c.mp4", video)}, data={"emotions": ["sad"]}, timeout=60)
            if r.status_code == 202:
                accepted.append(r.json()["id"])
            stop.wait(0.05)

    flooding = threading.Thread(target=flood, daemon=True)
    flooding.start()
    try:
        wait_until(lambda: len(accepted) >= 2, 10, "the first previews")
        job, beside = edit()
    finally:
        stop.set()
        flooding.join(60)
        for preview_id in accepted:
            hostile.post(f"/v1/previews/{preview_id}/cancel")
    print(
        f"\nanother key's edit: {beside:.2f} s beside one key's {len(accepted)} previews, {baseline:.2f} s alone "
        f"(one preview: {preview:.2f} s)"
    )

    def at(record: dict, field: str) -> datetime | None:  # type: ignore[type-arg]
        return datetime.fromisoformat(record[field]) if record.get(field) else None

    created, started = at(job, "created_at"), at(job, "started_at")
    assert created is not None and started is not None
    previews = [hostile.get(f"/v1/previews/{i}").json() for i in accepted]
    went_first = [p for p in previews if (s := at(p, "started_at")) is not None and created <= s < started]
    assert len(went_first) <= ahead, len(went_first)
    assert beside < baseline + (ahead + 1) * preview + 2.0, (beside, baseline, preview)


FLOOD_S = 20.0


def test_stray_asset_files_in_s3_are_swept(stack: Stack, tmp_path: Path) -> None:
    """Item 10: a PUT to a deleted asset's presigned URL recreates an object no record owns, and a presigned
    S3 PUT carries no size limit; the workers' asset sweep deletes both and keeps the asset in order."""
    from sqlalchemy import update

    from cmet_jobs.db.models import Asset
    from cmet_jobs.db.session import session_scope
    from tests.service.conftest import new_key
    from worker.sweeper import sweep_assets

    video = write_sample_clip(tmp_path / "c.mp4", seconds=0.2).read_bytes()
    with httpx.Client(base_url=stack.api_url, headers={"Authorization": f"Bearer {new_key(stack, 's3')}"}) as client:
        made = (client.post("/v1/uploads", json={"kind": "video", "size": len(video)}) for _ in range(3))
        kept, deleted, large = (m.json() for m in made)
        for made in (kept, deleted, large):
            assert httpx.put(made["upload_url"], content=video).status_code == 200
        assert client.delete(f"/v1/uploads/{deleted['id']}").status_code == 204
        assert httpx.put(deleted["upload_url"], content=video).status_code == 200  # the URL still works
        with session_scope(stack.env["CMET_DATABASE_URL"]) as session:  # as if the PUT had gone past its limit
            session.execute(update(Asset).where(Asset.id == large["id"]).values(max_bytes=len(video) - 1))
        names = {made["id"] for made in (kept, deleted, large)}
        assert {key.rsplit("/", 1)[-1] for key in stack.objects("assets/")} >= names
        assert sweep_assets(stack.settings()) >= 2  # what the workers' sweeper runs every minute
        left = {key.rsplit("/", 1)[-1] for key in stack.objects("assets/")}
        assert kept["id"] in left and not {deleted["id"], large["id"]} & left, left
        assert client.get(f"/v1/uploads/{kept['id']}").json()["uploaded"] is True
