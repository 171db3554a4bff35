"""The API process at its edges, as a hostile or careless client meets it: body limits by content
type, abandoned uploads, 405s and HEAD, the metrics token, the per-minute rate, the work of a clip.

One real uvicorn (the app on a fresh PostgreSQL database, local storage, the queue on Redis) and
no worker: nothing here needs a job to run. Requests go over raw sockets where the test must
control what is sent and when.
"""

from __future__ import annotations

import json
import os
import select
import socket
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from cmet_core.media.sample import write_sample_clip
from cmet_core.media.video import probe
from cmet_jobs.queue import time_limits
from tests.media_factory import make_dense_video
from tests.service.stack import REDIS_DB, REDIS_URL, free_port, postgres_database, process, wait_until

pytestmark = pytest.mark.stack  # the machine's PostgreSQL and Redis, without the `stack` fixture

MB = 1 << 20


@dataclass
class Api:
    url: str
    port: int
    pid: int
    log: Path
    env: dict[str, str]
    key: str

    def auth(self, key: str | None = None) -> dict[str, str]:
        return {"Authorization": f"Bearer {key or self.key}"}

    def new_key(self, **limits: int) -> str:
        from cmet_jobs.db.session import session_scope
        from cmet_jobs.keys import create_key

        with session_scope(self.env["CMET_DATABASE_URL"]) as session:
            return create_key(session, "edges", **limits).secret

    def log_since(self, offset: int) -> str:
        return self.log.read_bytes()[offset:].decode(errors="replace")


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    tmp = tmp_path_factory.mktemp("edges")
    port = free_port()
    with postgres_database() as database_url:
        env = {
            **os.environ,
            "PYTHONUNBUFFERED": "1",
            "CMET_DATA_DIR": str(tmp / "data"),
            "CMET_DATABASE_URL": database_url,
            "CMET_BROKER_URL": REDIS_URL,
            "CMET_QUEUE": f"cmet-edges-{uuid.uuid4().hex[:8]}",
            "CMET_PUBLIC_URL": f"http://127.0.0.1:{port}",
            "CMET_METRICS_TOKEN": uuid.uuid4().hex,
            "CMET_LOG_LEVEL": "INFO",
        }
        args = [sys.executable, "-m", "uvicorn", "service.app:app", "--host", "127.0.0.1", "--port", str(port)]
        log = tmp / "api.log"
        with process(args, env, log) as proc:
            url = f"http://127.0.0.1:{port}"
            wait_until(lambda: httpx.get(url + "/healthz").status_code == 200, 60, "API server", proc)
            partial = Api(url, port, proc.pid, log, env, key="")
            partial.key = partial.new_key(max_concurrent_jobs=100, max_submissions_per_minute=1000)
            yield partial


def _connect(api: Api) -> socket.socket:
    return socket.create_connection(("127.0.0.1", api.port), timeout=10)


def _head(method: str, path: str, headers: dict[str, str]) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1", *(f"{k}: {v}" for k, v in headers.items())]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def _read_response(sock: socket.socket, timeout: float = 10) -> tuple[int, dict[str, str], bytes]:
    """Status, headers and body of one response (Content-Length bodies; enough for problem+json)."""
    sock.settimeout(timeout)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"connection closed before a response: {data!r}"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in header_lines)}
    length = int(headers.get("content-length", "0"))
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return int(status_line.split()[1]), headers, body


def _memory_kb(pid: int) -> dict[str, int]:
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmHWM", "VmRSS"):
            fields[name] = int(value.split()[0])
    return fields


def _reset_peak(pid: int) -> bool:
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def _submit(api: Api, key: str, clip: bytes) -> httpx.Response:
    return httpx.post(
        api.url + "/v1/edits", headers=api.auth(key), files={"video": ("c.mp4", clip)}, data={"emotion": "happy"}
    )


# --- item 3: each content type has its own body limit ---------------------------------------------


def test_a_json_body_with_a_large_declared_length_is_refused_before_it_is_sent(api: Api) -> None:
    with _connect(api) as sock:
        headers = {**api.auth(), "Content-Type": "application/json", "Content-Length": str(5 * MB)}
        start = time.monotonic()
        sock.sendall(_head("POST", "/v1/edits", headers))  # and not one byte of the body
        status, _, body = _read_response(sock, timeout=5)
    assert (status, json.loads(body)["code"]) == (413, "body_too_large")
    assert time.monotonic() - start < 2


def test_a_chunked_json_body_is_stopped_at_its_limit_without_being_read_whole(api: Api) -> None:
    """5 MB of JSON sent chunked (no length to refuse early): the 413 comes while the client is
    still sending, and the server's peak memory does not grow by the body."""
    total, step = 5 * MB, 256 * 1024
    payload = b'{"emotion": "happy", "note": "' + b"a" * total + b'"}'
    with _connect(api) as warm:  # the route's first use loads what it needs; measure after that
        warm.sendall(
            _head("POST", "/v1/edits", {**api.auth(), "Content-Type": "application/json", "Content-Length": "2"})
            + b"{}"
        )
        assert _read_response(warm)[0] == 422
    measured = _reset_peak(api.pid)
    before = _memory_kb(api.pid)
    sent = 0
    with _connect(api) as sock:
        headers = {**api.auth(), "Content-Type": "application/json", "Transfer-Encoding": "chunked"}
        start = time.monotonic()
        sock.sendall(_head("POST", "/v1/edits", headers))
        answered = False
        while sent < len(payload) and not answered:
            chunk = payload[sent : sent + step]
            try:
                sock.sendall(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
            except (BrokenPipeError, ConnectionResetError):
                break
            sent += len(chunk)
            answered = bool(select.select([sock], [], [], 0.02)[0])
        if not answered and sent == len(payload):
            sock.sendall(b"0\r\n\r\n")  # the whole body went through: end it and see what it cost
        status, _, body = _read_response(sock, timeout=5)
        elapsed = time.monotonic() - start
    after = _memory_kb(api.pid)
    growth = after["VmHWM"] - (before["VmRSS"] if measured else before["VmHWM"])
    print(f"5 MB chunked JSON: {status} after {sent / MB:.2f} MB sent, {elapsed * 1000:.0f} ms, peak RSS +{growth} kB")
    assert (status, json.loads(body)["code"]) == (413, "body_too_large")
    assert sent <= 3 * MB, f"the client could send {sent} bytes before the answer"
    assert elapsed < 3
    assert growth < 3 * 1024, f"peak memory grew by {growth} kB for a refused 5 MB body"


def test_multipart_submissions_keep_the_file_limits(api: Api) -> None:
    junk = os.urandom(3 * MB)
    r = httpx.post(
        api.url + "/v1/edits",
        headers=api.auth(),
        files={"video": ("a.mp4", junk, "video/mp4")},
        data={"emotion": "happy"},
        timeout=30,
    )
    assert (r.status_code, r.json()["code"]) == (422, "not_media"), r.text  # read whole, then refused as media


# --- item 10: an abandoned upload is a normal event ----------------------------------------------------


def _abandon(api: Api, method: str, path: str, content_type: str, headers: dict[str, str] | None = None) -> None:
    """Declare 2 MB, send half, close the socket."""
    with _connect(api) as sock:
        head = {**(headers or {}), "Content-Type": content_type, "Content-Length": str(2 * MB)}
        part = b'--x\r\nContent-Disposition: form-data; name="speech"; filename="a.wav"\r\n\r\n'
        sock.sendall(_head(method, path, head) + part + b"\0" * (MB - len(part)))
        time.sleep(0.3)


def test_an_abandoned_upload_is_one_info_line_and_no_traceback(api: Api) -> None:
    offset = api.log.stat().st_size
    upload = httpx.post(api.url + "/v1/uploads", headers=api.auth(), json={"kind": "video", "size": 2 * MB}).json()
    signed = upload["upload_url"].removeprefix(api.url)
    _abandon(api, "POST", "/v1/edits", "multipart/form-data; boundary=x", api.auth())
    _abandon(api, "POST", "/v1/emotions", "multipart/form-data; boundary=x", api.auth())
    _abandon(api, "PUT", signed, "application/octet-stream")
    deadline = time.monotonic() + 10
    while api.log_since(offset).count("client left during") < 3 and time.monotonic() < deadline:
        time.sleep(0.1)
    log = api.log_since(offset)
    left = [line for line in log.splitlines() if "client left during" in line]
    assert len(left) == 3 and all(" INFO " in line for line in left), log
    assert "Traceback" not in log and "ERROR" not in log and "unhandled" not in log, log
    assert httpx.get(api.url + "/healthz").status_code == 200


# --- item 9: 405 names the methods, HEAD answers where GET does ------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [
        ("OPTIONS", "/v1/edits", "GET, HEAD, POST"),
        ("DELETE", "/v1/edits", "GET, HEAD, POST"),
        ("PUT", "/healthz", "GET, HEAD"),
    ],
)
def test_405_names_the_allowed_methods(api: Api, method: str, path: str, allow: str) -> None:
    r = httpx.request(method, api.url + path, headers=api.auth())
    assert (r.status_code, r.json()["code"], r.headers["allow"]) == (405, "method_not_allowed", allow)


def test_head_answers_wherever_get_does(api: Api) -> None:
    for path in ("/healthz", "/v1/edits", "/v1/emotions"):
        got, head = (httpx.request(m, api.url + path, headers=api.auth()) for m in ("GET", "HEAD"))
        assert got.status_code == head.status_code == 200, (path, head.status_code)
        assert head.content == b"" and head.headers["content-length"] == got.headers["content-length"]
    cancel = httpx.head(api.url + "/v1/edits/edt_x/cancel", headers=api.auth())  # POST only
    assert (cancel.status_code, cancel.headers["allow"]) == (405, "POST")


# --- item 12: metrics behind their token -------------------------------------------------------------------


def test_metrics_answer_only_the_metrics_token(api: Api) -> None:
    assert httpx.get(api.url + "/metrics").status_code == 401
    assert httpx.get(api.url + "/metrics", headers=api.auth()).status_code == 401  # an API key is not enough
    token = {"Authorization": f"Bearer {api.env['CMET_METRICS_TOKEN']}"}
    page = httpx.get(api.url + "/metrics", headers=token)
    assert page.status_code == 200 and 'cmet_jobs{state="queued"}' in page.text


@pytest.mark.parametrize("docs", [True, False])
def test_no_metrics_page_without_a_token_and_docs_as_set(tmp_path: Path, docs: bool) -> None:
    from fastapi.testclient import TestClient

    from cmet_jobs.settings import JobsSettings
    from service.app import create_app

    settings = JobsSettings(data_dir=tmp_path, metrics_token=None, docs=docs)
    with TestClient(create_app(settings)) as client:
        assert client.get("/metrics").status_code == 404
        for path in ("/docs", "/docs/assets/swagger-ui-bundle.js", "/docs/assets/swagger-ui.css", "/openapi.json"):
            assert client.get(path).status_code == (200 if docs else 404), path
        if docs:  # offline: Swagger UI from the package, nothing from a CDN, under the page's policy
            page = client.get("/docs")
            assert "https://" not in page.text and "default-src 'none'" in page.headers["content-security-policy"]


# --- item 5: the per-minute rate counts submissions ---------------------------------------------------------


def test_deleting_jobs_frees_no_submissions_in_the_minute(api: Api, tmp_path: Path) -> None:
    clip = write_sample_clip(tmp_path / "c.mp4", seconds=0.2).read_bytes()
    key = api.new_key(max_concurrent_jobs=10, max_submissions_per_minute=2)
    for _ in range(2):
        job = _submit(api, key, clip)
        assert job.status_code == 202, job.text
        edit = f"{api.url}/v1/edits/{job.json()['id']}"
        assert httpx.post(edit + "/cancel", headers=api.auth(key)).json()["state"] == "canceled"
        assert httpx.delete(edit, headers=api.auth(key)).status_code == 204
    assert httpx.get(api.url + "/v1/edits", headers=api.auth(key)).json()["data"] == []
    again = _submit(api, key, clip)
    assert (again.status_code, again.json()["code"]) == (429, "rate_limit"), again.text
    assert 1 <= int(again.headers["retry-after"]) <= 60


# --- item 4: the work of a clip is limited at submission, and sets the time limits ---------------------------


@pytest.mark.parametrize(
    ("frames", "seconds", "code"), [(40_000, 2.0, "too_many_frames"), (35_000, 1.0, "too_many_pixels")]
)
def test_a_tiny_clip_with_very_many_frames_is_refused_at_submission(
    api: Api, tmp_path: Path, frames: int, seconds: float, code: str
) -> None:
    dense = make_dense_video(tmp_path / "dense.mp4", frames=frames, seconds=seconds).read_bytes()
    before = httpx.get(api.url + "/v1/edits", headers=api.auth()).json()["data"]
    r = _submit(api, api.key, dense)
    assert (r.status_code, r.json()["code"]) == (422, code), r.text
    assert httpx.get(api.url + "/v1/edits", headers=api.auth()).json()["data"] == before


def test_time_limits_follow_the_frames_and_pixels_of_the_upload(api: Api, tmp_path: Path) -> None:
    """The queue message of an upload's edit carries limits from its probe (a URL's gets the cap)."""
    import redis

    clip = write_sample_clip(tmp_path / "c.mp4", seconds=0.2)
    job = _submit(api, api.key, clip.read_bytes())
    assert job.status_code == 202, job.text
    info = probe(clip)
    queued = redis.Redis(host="127.0.0.1", port=6379, db=REDIS_DB).lrange(api.env["CMET_QUEUE"], 0, -1)
    mine = [m for m in map(json.loads, queued) if job.json()["id"] in m["headers"]["argsrepr"]]
    soft, hard = time_limits(info.frame_count, info.width * info.height)
    assert len(mine) == 1 and mine[0]["headers"]["timelimit"] == [hard, soft]
    assert hard < time_limits(None, None)[1]
