"""The SSRF guard against literal addresses, a real local HTTP server and (once) a faked public DNS answer."""

from __future__ import annotations

import ipaddress
import shutil
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, TypedDict
from urllib.parse import parse_qs, urlsplit

import pytest

from cmet_jobs import net_guard
from cmet_jobs.net_guard import BlockedURLError, address_problem, check_url, fetch_to_file, post_json

BODY = bytes(range(256)) * 40  # 10240 bytes


class _Options(TypedDict):
    allow_private: bool
    schemes: tuple[str, ...]


LOCAL: _Options = {"allow_private": True, "schemes": ("http",)}  # the test server is plain http on loopback


@dataclass
class Served:
    url: str
    requests: list[tuple[str, str, dict[str, str], bytes]] = field(default_factory=list)

    def paths(self) -> list[str]:
        return [path for _, path, _, _ in self.requests]


class _Handler(BaseHTTPRequestHandler):
    served: Served

    def log_message(self, format: str, *args: object) -> None:  # keep pytest output clean
        pass

    def _record(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        self.served.requests.append((self.command, self.path, {k.lower(): v for k, v in self.headers.items()}, body))
        return body

    def _send(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None, length: bool = True) -> None:
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        if length:
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()  # HTTP/1.0: the connection closes after the body, which ends it without a length
        self.wfile.write(body)

    def do_GET(self) -> None:
        self._record()
        url = urlsplit(self.path)
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        if url.path == "/ok":
            self._send(200, BODY, {"Content-Type": "video/mp4"})
        elif url.path == "/nolength":
            self._send(200, BODY, {"Content-Type": "video/mp4"}, length=False)
        elif url.path == "/gzip":
            self._send(200, b"\x1f\x8b" + bytes(20), {"Content-Encoding": "gzip"})
        elif url.path == "/host":
            self._send(200, self.headers["Host"].encode())
        elif url.path == "/redirect":
            self._send(int(query.get("status", "302")), headers={"Location": query["to"]})
        elif url.path.startswith("/chain/"):
            left = int(url.path.rsplit("/", 1)[1])
            self._send(302, headers={"Location": f"/chain/{left - 1}" if left else "/ok"})
        elif url.path == "/loop":
            self._send(302, headers={"Location": "/loop"})
        elif url.path == "/slow":
            time.sleep(0.5)
            self._send(200, b"late")
        else:
            self._send(404, b"no")

    def do_POST(self) -> None:
        self._record()
        if self.path == "/hook":
            self._send(204)
        elif self.path == "/hook-redirect":
            self._send(307, headers={"Location": "/hook"})
        elif self.path == "/trickle":  # 200 at once, then one byte every 0.3 s (for at most 6 s)
            self.send_response(200)
            self.send_header("Content-Length", "1000")
            self.end_headers()
            for _ in range(20):
                try:
                    self.wfile.write(b"x")
                    self.wfile.flush()
                except OSError:  # the caller hung up
                    return
                time.sleep(0.3)
        else:
            self._send(200, b"x" * 100_000)


@contextmanager
def serving(served: Served, tls: ssl.SSLContext | None = None) -> Iterator[int]:
    """A threaded HTTP(S) server on 127.0.0.1 and a free port, recording into `served`."""
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), type("Handler", (_Handler,), {"served": served}))
    httpd.daemon_threads = True
    if tls is not None:
        httpd.socket = tls.wrap_socket(httpd.socket, server_side=True)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        yield int(httpd.server_address[1])
    finally:
        httpd.shutdown()
        httpd.server_close()


@pytest.fixture(scope="module")
def server() -> Iterator[Served]:
    served = Served("")
    with serving(served) as port:
        served.url = f"http://127.0.0.1:{port}"
        yield served


@pytest.fixture
def srv(server: Served) -> Served:
    server.requests.clear()
    return server


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# -- check_url -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "http://example.com/video.mp4",  # plain http is off by default
        "ftp://example.com/video.mp4",
        "file:///etc/passwd",
        "gopher://127.0.0.1:6379/_INFO",
        "javascript:alert(1)",
        "example.com/video.mp4",
    ],
)
def test_refuses_schemes(url: str) -> None:
    with pytest.raises(BlockedURLError) as err:
        check_url(url)
    assert err.value.code == "url_scheme"


@pytest.mark.parametrize(
    "url",
    [
        "https://user:pw@example.com/",
        "https://user@example.com/",
        "https:///path",
        "https://",
        "https://0177.0.0.1/",  # octal loopback in dotted-quad shape: httpx itself rejects it as an invalid IPv4
    ],
)
def test_refuses_credentials_and_empty_hosts(url: str) -> None:
    with pytest.raises(BlockedURLError) as err:
        check_url(url)
    assert err.value.code == "url_host"


@pytest.mark.parametrize(
    "host",
    [
        # loopback, in every spelling getaddrinfo accepts
        "127.0.0.1",
        "localhost",
        "[::1]",
        "2130706433",
        "0x7f000001",
        "127.1",
        "0x7f.1",
        "127.255.255.254",
        # private, shared, link-local, metadata
        "10.1.2.3",
        "192.168.1.1",
        "172.16.0.1",
        "172.31.255.255",
        "100.64.0.1",
        "169.254.1.1",
        "169.254.169.254",
        "[fd00:ec2::254]",
        "100.100.100.200",
        "[fc00::1]",
        "[fe80::1]",
        # IPv4 reached through IPv6 forms: mapped, 6to4, NAT64
        "[::ffff:127.0.0.1]",
        "[::ffff:7f00:1]",
        "[::ffff:169.254.169.254]",
        "[2002:7f00:1::]",
        "[64:ff9b::a00:1]",
        # unspecified, multicast, reserved
        "0.0.0.0",
        "[::]",
        "224.0.0.1",
        "[ff02::1]",
        "240.0.0.1",
        "255.255.255.255",
    ],
)
def test_refuses_non_public_addresses(host: str) -> None:
    with pytest.raises(BlockedURLError) as err:
        check_url(f"https://{host}/x")
    assert err.value.code == "url_private_address"


def test_allow_private_lets_lan_through_but_never_metadata() -> None:
    assert check_url("http://127.0.0.1:8080/", **LOCAL) == [ipaddress.ip_address("127.0.0.1")]
    assert check_url("http://10.0.0.7/", **LOCAL) == [ipaddress.ip_address("10.0.0.7")]
    for host in ["169.254.169.254", "[fd00:ec2::254]", "100.100.100.200", "[::ffff:169.254.169.254]", "169.254.170.2"]:
        with pytest.raises(BlockedURLError, match="metadata") as err:
            check_url(f"http://{host}/latest/meta-data/", **LOCAL)
        assert err.value.code == "url_private_address"
    with pytest.raises(BlockedURLError, match="multicast"):
        check_url("http://224.0.0.1/", **LOCAL)


def test_public_names_pass_and_any_private_answer_refuses(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # The only test with faked DNS: there is no public internet here, so a public answer must be made up.
    answers = {
        "public.test": ["93.184.215.14", "2606:2800:21f:cb07:6820:80da:af6b:8b2c"],
        "mixed.test": ["93.184.215.14", "10.0.0.1"],  # one bad answer among good ones is enough
        "mapped.test": ["::ffff:8.8.8.8"],
    }

    flips = iter([["93.184.215.14"], ["127.0.0.1"]])  # rebinding: public for the check, loopback at connect

    def fake(host: str, port: Any, *_: Any, **__: Any) -> list[Any]:
        found = next(flips) if host == "flip.test" else answers.get(host)
        if found is None:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return [(socket.AF_INET6 if ":" in a else socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, port)) for a in found]

    monkeypatch.setattr(socket, "getaddrinfo", fake)
    assert [str(a) for a in check_url("https://public.test/v.mp4")] == answers["public.test"]
    assert check_url("https://mapped.test/") == [ipaddress.ip_address("::ffff:8.8.8.8")]
    with pytest.raises(BlockedURLError) as err:
        check_url("https://mixed.test/")
    assert err.value.code == "url_private_address" and "10.0.0.1" in str(err.value)
    with pytest.raises(BlockedURLError) as err:
        check_url("https://gone.test/")
    assert err.value.code == "url_unresolvable"
    with pytest.raises(BlockedURLError, match="127.0.0.1") as err:
        fetch_to_file("https://flip.test/v.mp4", tmp_path / "v.mp4", max_bytes=100)  # re-checked at the connect
    assert err.value.code == "url_private_address" and list(tmp_path.iterdir()) == []


def test_address_problem_names_the_reason() -> None:
    assert address_problem(ipaddress.ip_address("8.8.8.8")) is None
    assert address_problem(ipaddress.ip_address("::1")) == "loopback address"
    assert address_problem(ipaddress.ip_address("2001:0:4136:e378:8000:63bf:3fff:fdd2")) == "private address"  # Teredo
    assert address_problem(ipaddress.ip_address("::1"), allow_private=True) is None


# -- fetch_to_file against a real server on 127.0.0.1 ---------------------------------------------


def test_fetch_saves_the_body(srv: Served, tmp_path: Path) -> None:
    result = fetch_to_file(f"{srv.url}/ok", tmp_path / "in.mp4", max_bytes=len(BODY), **LOCAL)
    assert result.path.read_bytes() == BODY and result.size == len(BODY)
    assert result.content_type == "video/mp4" and result.final_url == f"{srv.url}/ok"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.mp4"]


def test_fetch_follows_checked_redirects(srv: Served, tmp_path: Path) -> None:
    result = fetch_to_file(f"{srv.url}/chain/3", tmp_path / "in.mp4", max_bytes=len(BODY), max_redirects=4, **LOCAL)
    assert result.final_url == f"{srv.url}/ok" and result.path.read_bytes() == BODY
    assert srv.paths() == ["/chain/3", "/chain/2", "/chain/1", "/chain/0", "/ok"]


@pytest.mark.parametrize("path", ["/ok", "/nolength"])  # refused from Content-Length, or while streaming
def test_fetch_over_the_limit_leaves_no_file(srv: Served, tmp_path: Path, path: str) -> None:
    with pytest.raises(BlockedURLError) as err:
        fetch_to_file(f"{srv.url}{path}", tmp_path / "in.mp4", max_bytes=len(BODY) - 1, **LOCAL)
    assert err.value.code == "url_too_large"
    assert list(tmp_path.iterdir()) == []


def test_fetch_refuses_a_redirect_to_metadata_at_the_hop(srv: Served, tmp_path: Path) -> None:
    with pytest.raises(BlockedURLError) as err:
        fetch_to_file(
            f"{srv.url}/redirect?to=http://169.254.169.254/latest/meta-data/",
            tmp_path / "in.mp4",
            max_bytes=1000,
            **LOCAL,
        )
    assert err.value.code == "url_private_address" and "169.254.169.254" in str(err.value)
    assert srv.paths() == ["/redirect?to=http://169.254.169.254/latest/meta-data/"]
    assert list(tmp_path.iterdir()) == []


def test_fetch_refuses_a_redirect_to_another_scheme(srv: Served, tmp_path: Path) -> None:
    with pytest.raises(BlockedURLError) as err:
        fetch_to_file(f"{srv.url}/redirect?to=file:///etc/passwd&status=301", tmp_path / "x", max_bytes=10, **LOCAL)
    assert err.value.code == "url_scheme"


def test_fetch_stops_after_max_redirects(srv: Served, tmp_path: Path) -> None:
    with pytest.raises(BlockedURLError) as err:
        fetch_to_file(f"{srv.url}/loop", tmp_path / "x", max_bytes=10, max_redirects=3, **LOCAL)
    assert err.value.code == "url_too_many_redirects"
    assert srv.paths() == ["/loop"] * 4  # the first request and three redirects followed
    assert list(tmp_path.iterdir()) == []


def test_fetch_without_allow_private_never_reaches_the_server(srv: Served, tmp_path: Path) -> None:
    with pytest.raises(BlockedURLError) as err:
        fetch_to_file(f"{srv.url}/ok", tmp_path / "x", max_bytes=len(BODY), schemes=("http",))
    assert err.value.code == "url_private_address"
    with pytest.raises(BlockedURLError) as err:
        fetch_to_file(f"{srv.url}/ok", tmp_path / "x", max_bytes=len(BODY))
    assert err.value.code == "url_scheme"
    assert srv.requests == []


@pytest.mark.parametrize(
    "path,code",
    [
        ("/missing", "url_fetch_failed"),  # 404
        ("/slow", "url_fetch_failed"),  # past the read timeout
        ("/gzip", "url_fetch_failed"),  # compressed although identity was asked: no decompression bombs
        ("/redirect?to=http://[::1", "url_fetch_failed"),  # a Location that is no URL
    ],
)
def test_fetch_failures(srv: Served, tmp_path: Path, path: str, code: str) -> None:
    with pytest.raises(BlockedURLError) as err:
        fetch_to_file(f"{srv.url}{path}", tmp_path / "x", max_bytes=100, timeout=0.2, **LOCAL)
    assert err.value.code == code
    assert list(tmp_path.iterdir()) == []


def test_fetch_from_a_closed_port_fails(tmp_path: Path) -> None:
    with pytest.raises(BlockedURLError) as err:
        fetch_to_file(f"http://127.0.0.1:{closed_port()}/", tmp_path / "x", max_bytes=100, **LOCAL)
    assert err.value.code == "url_fetch_failed"


def test_connection_is_pinned_to_the_checked_address(
    srv: Served, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # DNS rebinding: the name answers 127.0.0.1 to the check, then the metadata address. The connection
    # must use the checked answer (no second lookup of the name) and still send the name as Host.
    real = socket.getaddrinfo
    lookups: list[str] = []

    def rebinding(host: str, port: Any, *args: Any, **kwargs: Any) -> list[Any]:
        if host != "rebind.test":
            return real(host, port, *args, **kwargs)
        lookups.append(host)
        address = "127.0.0.1" if len(lookups) == 1 else "169.254.169.254"
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, port))]

    monkeypatch.setattr(socket, "getaddrinfo", rebinding)
    port = srv.url.rsplit(":", 1)[1]
    # fetch_to_file checks up front and again right before connecting: the second answer is refused.
    with pytest.raises(BlockedURLError, match="metadata"):
        fetch_to_file(f"http://rebind.test:{port}/host", tmp_path / "x", max_bytes=100, **LOCAL)
    assert srv.requests == []
    lookups.clear()
    monkeypatch.setattr("cmet_jobs.net_guard.check_url", lambda *_, **__: [])  # skip the up-front check
    result = fetch_to_file(f"http://rebind.test:{port}/host", tmp_path / "x", max_bytes=100, timeout=2.0, **LOCAL)
    assert result.path.read_text() == f"rebind.test:{port}" and lookups == ["rebind.test"]


def _resolve_to_loopback(monkeypatch: pytest.MonkeyPatch, names: set[str]) -> None:
    """Made-up names that answer 127.0.0.1 (loopback, not a faked public answer)."""
    real = socket.getaddrinfo

    def fake(host: str, port: Any, *args: Any, **kwargs: Any) -> list[Any]:
        if host in names:
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", port))]
        return real(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", fake)


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command to make a certificate")
def test_https_keeps_the_name_for_sni_and_certificate_checks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Pinning connects to the checked IP, but TLS must still see the URL's name: SNI says it and the
    # certificate is checked against it (a certificate for another name fails).
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            str(key),
            "-out",
            str(cert),
            "-days",
            "1",
            "-subj",
            "/CN=pinned.test",
            "-addext",
            "subjectAltName=DNS:pinned.test",
        ],
        check=True,
        capture_output=True,
    )
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(cert, key)
    names: list[str | None] = []
    server_ctx.sni_callback = lambda _sock, name, _ctx: names.append(name)
    _resolve_to_loopback(monkeypatch, {"pinned.test", "other.test"})
    monkeypatch.setattr(net_guard, "_ssl_context", lambda: ssl.create_default_context(cafile=str(cert)))
    with serving(Served(""), tls=server_ctx) as port:
        result = fetch_to_file(f"https://pinned.test:{port}/host", tmp_path / "x", max_bytes=100, allow_private=True)
        assert result.path.read_text() == f"pinned.test:{port}" and names == ["pinned.test"]
        with pytest.raises(BlockedURLError, match="CERTIFICATE_VERIFY_FAILED") as err:
            fetch_to_file(f"https://other.test:{port}/host", tmp_path / "y", max_bytes=100, allow_private=True)
        assert err.value.code == "url_fetch_failed"


# -- post_json (webhooks) --------------------------------------------------------------------------


def test_post_json_delivers(srv: Served) -> None:
    result = post_json(
        f"{srv.url}/hook",
        b'{"type":"edit.succeeded"}',
        {"webhook-id": "msg_1", "content-type": "application/json"},
        **LOCAL,
    )
    assert result.status_code == 204 and result.is_success
    method, path, headers, body = srv.requests[0]
    assert (method, path, body) == ("POST", "/hook", b'{"type":"edit.succeeded"}')
    assert headers["webhook-id"] == "msg_1" and headers["content-type"] == "application/json"


def test_post_json_does_not_follow_redirects(srv: Served) -> None:
    result = post_json(f"{srv.url}/hook-redirect", b"{}", **LOCAL)
    assert result.status_code == 307 and not result.is_success
    assert srv.paths() == ["/hook-redirect"]


def test_post_json_keeps_only_the_start_of_a_big_answer(srv: Served) -> None:
    result = post_json(f"{srv.url}/big", b"{}", max_response_bytes=1000, **LOCAL)
    assert result.status_code == 200 and result.body == b"x" * 1000


def test_post_json_has_one_deadline_for_the_whole_answer(srv: Served) -> None:
    """A receiver that answers 200 and then sends a byte every 0.3 s never trips a per-read timeout
    (5 s here); the call's overall deadline ends it."""
    started = time.monotonic()
    with pytest.raises(BlockedURLError, match="did not answer in full within 1 s") as err:
        post_json(f"{srv.url}/trickle", b"{}", timeout=5.0, total_timeout=1.0, **LOCAL)
    took = time.monotonic() - started
    assert err.value.code == "url_fetch_failed" and 1.0 <= took < 1.5, took


def test_post_json_is_guarded(srv: Served) -> None:
    calls: list[tuple[Callable[[], object], str]] = [
        (lambda: post_json(f"{srv.url}/hook", b"{}", schemes=("http",)), "url_private_address"),
        (lambda: post_json("http://169.254.169.254/hook", b"{}", **LOCAL), "url_private_address"),
        (lambda: post_json(f"{srv.url}/hook", b"{}"), "url_scheme"),
        (lambda: post_json(f"http://127.0.0.1:{closed_port()}/hook", b"{}", **LOCAL), "url_fetch_failed"),
    ]
    for call, code in calls:
        with pytest.raises(BlockedURLError) as err:
            call()
        assert err.value.code == code
    assert srv.requests == []


@pytest.mark.parametrize(
    ("url", "code", "named"),
    [
        ("http://127.0.0.1:9/hook", "url_scheme", True),  # a receiver on the same machine
        ("https://10.0.0.7/hook", "url_private_address", True),
        ("https://169.254.169.254/latest/meta-data/", "url_private_address", False),  # refused even with it
        ("https://127.0.0.1/a.mp4", "url_fetch_failed", False),  # not an address refusal
    ],
)
def test_a_refusal_names_the_setting_only_where_it_would_help(url: str, code: str, named: bool) -> None:
    from cmet_core.errors import ErrorCode
    from cmet_jobs.settings import JobsSettings
    from cmet_jobs.submissions import refused_url

    shut = refused_url(JobsSettings(allow_private_urls=False), url, ErrorCode(code), "refused")
    assert shut.code == code and ("CMET_ALLOW_PRIVATE_URLS=true" in shut.detail) is named
    assert (
        "CMET_ALLOW_PRIVATE_URLS"
        not in refused_url(JobsSettings(allow_private_urls=True), url, ErrorCode(code), "x").detail
    )
