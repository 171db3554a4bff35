"""SSRF guard for every URL the server fetches (video/speech inputs) or calls (webhooks).

Why: a client-supplied URL makes *our* machine send a request. Unguarded, a client could read cloud
metadata credentials, talk to PostgreSQL/Redis/S3 on 127.0.0.1 or scan the LAN. So we resolve the
name ourselves, refuse it when ANY address is not public, and then connect only to the addresses we
checked (DNS pinning): a second DNS answer (rebinding) never reaches the socket. The original name
still goes in the Host header and in TLS SNI/certificate checks, so https works unchanged. Every
redirect hop is a new request through the same check, and bodies are streamed to disk under a cap.

Left to the network: a public address that forwards inward (our own public IP with hairpin NAT, an
open proxy) passes, and allow_private opens the whole LAN except the metadata addresses. Environment
proxies are ignored, since a proxy would resolve the name again. An egress firewall stays the backstop.
"""

from __future__ import annotations

import ipaddress
import os
import socket
import ssl
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import httpcore
import httpx

from cmet_core.errors import ErrorCode

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


# Refused even with allow_private: these hand out credentials of the machine's cloud role.
METADATA_ADDRESSES: Final[frozenset[IPAddress]] = frozenset(
    ipaddress.ip_address(a)
    for a in (
        "169.254.169.254",  # AWS, GCP, Azure, OCI, OpenStack, DigitalOcean
        "169.254.170.2",  # AWS ECS task credentials
        "169.254.170.23",  # AWS EKS pod identity agent
        "fd00:ec2::254",  # AWS IMDS over IPv6
        "fd00:ec2::23",  # AWS EKS pod identity agent over IPv6
        "100.100.100.200",  # Alibaba Cloud
    )
)

# Not public, yet not `is_private` in Python 3.11's tables.
_EXTRA_NON_PUBLIC: Final = (
    ipaddress.ip_network("100.64.0.0/10"),  # shared address space (carrier-grade NAT)
    ipaddress.ip_network("64:ff9b:1::/48"),  # local-use NAT64 (RFC 8215)
    ipaddress.ip_network("fec0::/10"),  # deprecated IPv6 site-local
)
_NAT64: Final = ipaddress.ip_network("64:ff9b::/96")  # well-known NAT64 prefix: last 32 bits are IPv4
_IPV4_COMPAT: Final = ipaddress.ip_network("::/96")  # deprecated IPv4-compatible form
_DEFAULT_PORTS: Final = {"http": 80, "https": 443}
_HTTPX_ERRORS: Final = (httpx.HTTPError, httpx.InvalidURL, httpx.StreamError)
_NETWORK_ERRORS: Final = (
    *_HTTPX_ERRORS,
    httpcore.TimeoutException,
    httpcore.NetworkError,
    httpcore.ProtocolError,
    httpcore.UnsupportedProtocol,
    httpcore.ProxyError,
    OSError,
)
USER_AGENT: Final = "cmet"


class BlockedURLError(ValueError):
    """A URL the guard refused or could not fetch; `code` is the stable problem+json code."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class FetchResult:
    path: Path
    size: int
    content_type: str | None
    final_url: str


@dataclass(frozen=True)
class PostResult:
    """A webhook call's outcome; `body` is at most the first `max_response_bytes` (diagnostics only)."""

    status_code: int
    headers: httpx.Headers
    body: bytes

    @property
    def is_success(self) -> bool:
        return 200 <= self.status_code < 300


def _embedded_ipv4(address: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    """IPv4 addresses an IPv6 form routes to: mapped, 6to4, NAT64, IPv4-compatible, Teredo."""
    if address.ipv4_mapped is not None:
        return [address.ipv4_mapped]
    if address.sixtofour is not None:
        return [address.sixtofour]
    if address in _NAT64 or (address in _IPV4_COMPAT and int(address) > 1):
        return [ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)]
    if address.teredo is not None:
        return list(address.teredo)
    return []


def address_problem(address: IPAddress, *, allow_private: bool = False) -> str | None:
    """Why `address` must not be contacted, or None when it may be."""
    judged: list[IPAddress] = [address]
    if isinstance(address, ipaddress.IPv6Address):
        embedded = _embedded_ipv4(address)
        if embedded:
            # A translated form is as dangerous as the IPv4 address it reaches; judge that instead
            # (Teredo keeps its own, non-public, prefix in the list too).
            judged = [*embedded] if address.teredo is None else [address, *embedded]
    for a in judged:
        if a in METADATA_ADDRESSES:
            return "cloud metadata address"
    for a in judged:
        if a.is_multicast:
            return "multicast address"
        if a.is_unspecified:
            return "unspecified address"
        if allow_private:
            continue  # LAN self-hosting: loopback, private and link-local targets are intended
        if a.is_loopback:
            return "loopback address"
        if a.is_link_local:
            return "link-local address"
        if a.is_private or not a.is_global or any(a in net for net in _EXTRA_NON_PUBLIC):
            return "private address"
        if a.is_reserved:
            return "reserved address"
    return None


def _target(url: httpx.URL, schemes: Sequence[str]) -> tuple[str, int]:
    """(ASCII host, port) of a URL the guard accepts syntactically."""
    allowed = tuple(s.lower() for s in schemes)
    if url.scheme not in allowed:
        raise BlockedURLError(
            ErrorCode.URL_SCHEME, f"scheme {url.scheme or '(none)'!r} is not allowed; use {' or '.join(allowed)}"
        )
    if url.userinfo:
        raise BlockedURLError(ErrorCode.URL_HOST, "credentials in the URL are not allowed")
    host = url.raw_host.decode("ascii")
    if not host:
        raise BlockedURLError(ErrorCode.URL_HOST, "the URL has no host")
    return host, url.port or _DEFAULT_PORTS.get(url.scheme, 443)


def _parse(url: str | httpx.URL) -> httpx.URL:
    try:
        return url if isinstance(url, httpx.URL) else httpx.URL(url)
    except (httpx.InvalidURL, TypeError, ValueError) as exc:
        raise BlockedURLError(ErrorCode.URL_HOST, f"not a valid URL: {exc}") from None


def _resolve_checked(host: str, port: int, allow_private: bool) -> list[IPAddress]:
    """Every A/AAAA address of host, refusing them all if any one is not allowed."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
    except (OSError, UnicodeError) as exc:
        raise BlockedURLError(ErrorCode.URL_UNRESOLVABLE, f"cannot resolve {host}: {exc}") from None
    addresses: list[IPAddress] = []
    for family, _, _, _, sockaddr in infos:
        if family not in (socket.AF_INET, socket.AF_INET6):
            continue
        address = ipaddress.ip_address(str(sockaddr[0]))
        if address not in addresses:
            addresses.append(address)
    if not addresses:
        raise BlockedURLError(ErrorCode.URL_UNRESOLVABLE, f"{host} has no IPv4 or IPv6 address")
    for address in addresses:
        problem = address_problem(address, allow_private=allow_private)
        if problem is not None:
            raise BlockedURLError(ErrorCode.URL_PRIVATE_ADDRESS, f"{host} resolves to {address}, a {problem}")
    return addresses


def check_url(url: str, *, allow_private: bool = False, schemes: Sequence[str] = ("https",)) -> list[IPAddress]:
    """Resolve `url`'s host and return its addresses, or raise BlockedURLError.

    Numeric hosts in any spelling (`2130706433`, `0x7f.1`, `127.1`) go through getaddrinfo like names,
    so the C library's own parser decides what they mean, the same one the socket would have used.
    """
    host, port = _target(_parse(url), schemes)
    return _resolve_checked(host, port, allow_private)


class _Deadline:
    """One deadline for a whole exchange: every connect, read and write waits at most until it.

    httpx's timeouts bound each socket operation alone, so a server sending one byte at a time
    could hold a caller for ever; clamping each operation's timeout to what is left bounds the sum.
    """

    def __init__(self, seconds: float | None) -> None:
        self.seconds = seconds
        self.at = None if seconds is None else time.monotonic() + seconds

    def passed(self) -> bool:
        return self.at is not None and time.monotonic() >= self.at

    def clamp(self, timeout: float | None, error: type[httpcore.TimeoutException]) -> float | None:
        if self.at is None:
            return timeout
        left = self.at - time.monotonic()
        if left <= 0:
            raise error(f"the deadline of {self.seconds:g} s passed")
        return left if timeout is None else min(timeout, left)


class _DeadlineStream(httpcore.NetworkStream):
    def __init__(self, inner: httpcore.NetworkStream, deadline: _Deadline) -> None:
        self._inner, self._deadline = inner, deadline

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._inner.read(max_bytes, self._deadline.clamp(timeout, httpcore.ReadTimeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._inner.write(buffer, self._deadline.clamp(timeout, httpcore.WriteTimeout))

    def close(self) -> None:
        self._inner.close()

    def start_tls(
        self, ssl_context: ssl.SSLContext, server_hostname: str | None = None, timeout: float | None = None
    ) -> httpcore.NetworkStream:
        timeout = self._deadline.clamp(timeout, httpcore.ConnectTimeout)
        return _DeadlineStream(self._inner.start_tls(ssl_context, server_hostname, timeout), self._deadline)

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)


class _PinnedBackend(httpcore.NetworkBackend):
    """Connects to the addresses the transport checked for (host, port), never to a fresh lookup."""

    def __init__(self, deadline: _Deadline) -> None:
        self._inner = httpcore.SyncBackend()
        self._deadline = deadline
        self.pins: dict[tuple[str, int], list[IPAddress]] = {}

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        addresses = self.pins.get((host, port))
        if not addresses:
            raise httpcore.ConnectError(f"{host}:{port} was not checked")
        error: Exception | None = None
        for address in addresses:
            try:
                wait = self._deadline.clamp(timeout, httpcore.ConnectTimeout)
                stream = self._inner.connect_tcp(str(address), port, wait, local_address, socket_options)
                return _DeadlineStream(stream, self._deadline)
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                error = exc
        assert error is not None
        raise error

    def connect_unix_socket(self, *_: Any, **__: Any) -> httpcore.NetworkStream:
        raise httpcore.ConnectError("unix sockets are not allowed")

    def sleep(self, seconds: float) -> None:
        self._inner.sleep(seconds)


class _GuardedStream(httpx.SyncByteStream):
    def __init__(self, inner: Iterable[bytes]) -> None:
        self._inner = inner

    def __iter__(self) -> Iterator[bytes]:
        try:
            yield from self._inner
        except _NETWORK_ERRORS as exc:
            raise BlockedURLError(ErrorCode.URL_FETCH_FAILED, f"reading the response failed: {exc!r}") from None

    def close(self) -> None:
        close = getattr(self._inner, "close", None)
        if close is not None:
            close()


def _ssl_context() -> ssl.SSLContext:
    """Certificate checks against the URL's name (certifi roots); the tests swap in their own CA."""
    return httpx.create_ssl_context(trust_env=False)


class _GuardedTransport(httpx.BaseTransport):
    """Checks every request's URL right before sending it and pins the connection to what it checked."""

    def __init__(self, *, allow_private: bool, schemes: Sequence[str], deadline: _Deadline) -> None:
        self._allow_private, self._schemes = allow_private, tuple(schemes)
        self._backend = _PinnedBackend(deadline)
        self._pool = httpcore.ConnectionPool(
            ssl_context=_ssl_context(), network_backend=self._backend, max_connections=4
        )

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        assert isinstance(request.stream, httpx.SyncByteStream)
        host, port = _target(request.url, self._schemes)
        self._backend.pins[(host, port)] = _resolve_checked(host, port, self._allow_private)
        core = httpcore.Request(
            method=request.method,
            url=httpcore.URL(
                scheme=request.url.raw_scheme,
                host=request.url.raw_host,
                port=request.url.port,
                target=request.url.raw_path,
            ),
            headers=request.headers.raw,
            content=request.stream,
            extensions=request.extensions,
        )
        try:
            response = self._pool.handle_request(core)
        except _NETWORK_ERRORS as exc:
            raise BlockedURLError(ErrorCode.URL_FETCH_FAILED, f"{host}:{port}: {exc!r}") from None
        assert isinstance(response.stream, Iterable)
        return httpx.Response(
            status_code=response.status,
            headers=response.headers,
            stream=_GuardedStream(response.stream),
            extensions=response.extensions,
        )

    def close(self) -> None:
        self._pool.close()


def _client(
    allow_private: bool, schemes: Sequence[str], timeout: float, deadline: _Deadline | None = None
) -> httpx.Client:
    # trust_env=False: no proxy from the environment (it would bypass the pinning) and no ~/.netrc.
    return httpx.Client(
        transport=_GuardedTransport(allow_private=allow_private, schemes=schemes, deadline=deadline or _Deadline(None)),
        timeout=httpx.Timeout(timeout),
        follow_redirects=False,
        trust_env=False,
        headers={"User-Agent": USER_AGENT, "Accept-Encoding": "identity"},
    )


def _save(response: httpx.Response, part: Path, max_bytes: int, deadline: _Deadline) -> int:
    size = 0
    with part.open("wb") as out:
        for chunk in response.iter_raw():
            size += len(chunk)
            if size > max_bytes:
                raise BlockedURLError(ErrorCode.URL_TOO_LARGE, f"the response is larger than {max_bytes} bytes")
            if deadline.passed():
                raise BlockedURLError(ErrorCode.URL_FETCH_FAILED, "the download took too long")
            out.write(chunk)
    return size


def fetch_to_file(
    url: str,
    dest: Path,
    *,
    max_bytes: int,
    allow_private: bool = False,
    schemes: Sequence[str] = ("https",),
    timeout: float = 30.0,
    max_redirects: int = 5,
    total_timeout: float = 600.0,
) -> FetchResult:
    """GET `url` into `dest`, following up to `max_redirects` redirects, each hop checked and pinned.

    The body goes to `dest.part` first and is renamed when complete, so `dest` never holds a partial
    download; on any error the part file is removed. `timeout` bounds each connect/read/write,
    `total_timeout` the whole download (a server dribbling bytes cannot hold a worker forever).
    """
    current = _parse(url)
    check_url(str(current), allow_private=allow_private, schemes=schemes)  # fail before any socket opens
    part = dest.with_name(dest.name + ".part")
    deadline = _Deadline(total_timeout)
    try:
        with (
            _client(allow_private, schemes, timeout, deadline) as client,
            _follow(client, current, max_redirects) as (response, current),
        ):
            _check_declared(response, current, max_bytes)
            size = _save(response, part, max_bytes, deadline)
            os.replace(part, dest)
            return FetchResult(dest, size, response.headers.get("content-type"), str(current))
    except _HTTPX_ERRORS as exc:  # network errors arrive mapped already; a local disk error stays itself
        part.unlink(missing_ok=True)
        raise BlockedURLError(ErrorCode.URL_FETCH_FAILED, f"fetching {current} failed: {exc!r}") from None
    except BaseException:
        part.unlink(missing_ok=True)
        raise


def probe_url(
    url: str,
    *,
    max_bytes: int,
    allow_private: bool = False,
    schemes: Sequence[str] = ("https",),
    timeout: float = 5.0,
    max_redirects: int = 5,
    total_timeout: float = 10.0,
) -> None:
    """What `fetch_to_file` would meet, without the body: every redirect hop checked, the final
    answer a success, the declared size within `max_bytes`. Lets the API refuse a bad URL input
    (a redirect to a private address, a 404, a file too big) at submission; the worker checks again
    when it fetches, since DNS and servers may change in between. `total_timeout` bounds the whole
    probe (every hop's connect and reads): a server that drips its headers holds a submission thread
    no longer than that."""
    current = _parse(url)
    check_url(str(current), allow_private=allow_private, schemes=schemes)
    deadline = _Deadline(total_timeout)
    with (
        _within(deadline, str(current), "fetching"),
        _client(allow_private, schemes, timeout, deadline) as client,
        _follow(client, current, max_redirects, {"Range": "bytes=0-0"}) as (response, current),
    ):
        total = response.headers.get("content-range", "").rpartition("/")[2]
        if response.status_code == 206 and total.isdigit() and int(total) > max_bytes:
            raise BlockedURLError(ErrorCode.URL_TOO_LARGE, f"the file is {total} bytes; the limit is {max_bytes}")
        if response.status_code != 206:
            _check_declared(response, current, max_bytes)


@contextmanager
def _within(deadline: _Deadline, url: str, doing: str) -> Iterator[None]:
    """Any failure of an exchange under `deadline` as a BlockedURLError: past the deadline, that it was
    too slow (whatever the socket said); otherwise what failed."""
    try:
        yield
    except (*_NETWORK_ERRORS, BlockedURLError) as exc:
        if deadline.passed():
            raise BlockedURLError(
                ErrorCode.URL_FETCH_FAILED, f"{url} did not answer in full within {deadline.seconds:g} s"
            ) from None
        if isinstance(exc, BlockedURLError):
            raise
        raise BlockedURLError(ErrorCode.URL_FETCH_FAILED, f"{doing} {url} failed: {exc!r}") from None


@contextmanager
def _follow(
    client: httpx.Client, current: httpx.URL, max_redirects: int, headers: Mapping[str, str] | None = None
) -> Iterator[tuple[httpx.Response, httpx.URL]]:
    """The final (non-redirect, successful) streamed response and its URL; each hop is checked by the transport."""
    for hop in range(max_redirects + 1):
        with client.stream("GET", current, headers=headers) as response:
            if response.is_redirect:
                if hop == max_redirects:
                    raise BlockedURLError(ErrorCode.URL_TOO_MANY_REDIRECTS, f"more than {max_redirects} redirects")
                current = current.join(response.headers["location"])
                continue
            if not response.is_success:
                raise BlockedURLError(ErrorCode.URL_FETCH_FAILED, f"{current} answered HTTP {response.status_code}")
            yield response, current
            return
    raise AssertionError("unreachable")  # the loop yields or raises on every path


def _check_declared(response: httpx.Response, url: httpx.URL, max_bytes: int) -> None:
    encoding = response.headers.get("content-encoding", "identity").strip().lower()
    if encoding != "identity":
        # We asked for identity; decoding gzip/br/zstd would let a tiny body inflate past
        # max_bytes in memory before any check sees it.
        raise BlockedURLError(ErrorCode.URL_FETCH_FAILED, f"{url} sent a {encoding}-encoded body")
    declared = response.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > max_bytes:
        raise BlockedURLError(ErrorCode.URL_TOO_LARGE, f"the response is {declared} bytes; the limit is {max_bytes}")


def post_json(
    url: str,
    body: bytes,
    headers: Mapping[str, str] | None = None,
    *,
    allow_private: bool = False,
    schemes: Sequence[str] = ("https",),
    timeout: float = 10.0,
    total_timeout: float = 10.0,
    max_response_bytes: int = 64 * 1024,
) -> PostResult:
    """POST a webhook body through the same guard. Redirects are returned, not followed: a 3xx is not
    2xx, so the caller counts it as a failed delivery (following it could turn a public URL into a
    private one, and would re-send a signed body to a host the subscriber never named).

    `total_timeout` bounds the whole call (connect, send, the whole response): a receiver that
    answers 200 and then trickles its body fails the call at that deadline, as a dead one would."""
    check_url(url, allow_private=allow_private, schemes=schemes)
    sent = httpx.Headers(headers or {})
    sent.setdefault("Content-Type", "application/json")
    deadline = _Deadline(total_timeout)
    with (
        _within(deadline, url, "calling"),
        _client(allow_private, schemes, timeout, deadline) as client,
        client.stream("POST", url, content=body, headers=sent) as response,
    ):
        received = bytearray()
        for chunk in response.iter_raw():
            received += chunk[: max_response_bytes - len(received)]
            if len(received) >= max_response_bytes:
                break
        return PostResult(response.status_code, response.headers, bytes(received))
