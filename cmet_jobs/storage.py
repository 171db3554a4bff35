"""Where inputs and results live: S3-compatible storage through boto3, or a local directory.

Both hand out URLs clients use directly: S3 presigns them; the local backend signs its own
(HMAC over key, method and expiry) and the API serves them at `/v1/files/...`, so the embedded
default behaves like the scaled one. Keys are deterministic per job (`jobs/<id>/output.mp4`), so
a re-run after a crash overwrites the same object instead of leaving a second one.
"""

from __future__ import annotations

import hashlib
import hmac
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import TYPE_CHECKING, ParamSpec, Protocol, TypeVar
from urllib.parse import quote, urlencode

from cmet_core.modelsets.s3 import s3_client
from cmet_jobs.settings import JobsSettings

if TYPE_CHECKING:
    from mypy_boto3_s3.type_defs import ObjectIdentifierTypeDef

P = ParamSpec("P")
R = TypeVar("R")


_request_origin: ContextVar[str | None] = ContextVar("cmet_request_origin", default=None)


@contextmanager
def request_origin(origin: str) -> Iterator[None]:
    """Local URLs signed inside the block name `origin` (the API sets it per request) unless a public URL is
    set: a page opened at http://localhost:PORT/ then uploads to that same origin, not to 127.0.0.1."""
    token = _request_origin.set(origin.rstrip("/"))
    try:
        yield
    finally:
        _request_origin.reset(token)


class StorageError(RuntimeError):
    """Storage unreachable or refusing; the worker retries these, then fails the job with code `storage`."""


class Storage(Protocol):
    def put_file(self, key: str, path: Path, content_type: str) -> None: ...
    def get_file(self, key: str, path: Path) -> None: ...
    def copy(self, source: str, key: str) -> None: ...
    def size(self, key: str) -> int | None: ...
    def head(self, key: str, n: int) -> bytes: ...
    def delete_prefix(self, prefix: str) -> None: ...
    def listing(self, prefix: str) -> list[tuple[str, int]]: ...
    def download_url(self, key: str, filename: str | None = None) -> str: ...
    def upload_url(self, key: str, size: int) -> tuple[str, dict[str, str]]:
        """A URL to PUT exactly `size` bytes to `key` (its signature covers the size), and headers to send."""
        ...

    def check(self) -> None: ...


def sign(secret: bytes, method: str, key: str, expires: int, size: int | None = None) -> str:
    """The local backend's URL signature; an upload's covers its size, as S3's covers `Content-Length`."""
    sized = "" if size is None else f"\n{size}"
    return hmac.new(secret, f"{method}\n{key}\n{expires}{sized}".encode(), hashlib.sha256).hexdigest()


def verify(secret: bytes, method: str, key: str, expires: int, signature: str, size: int | None = None) -> bool:
    return expires >= time.time() and hmac.compare_digest(sign(secret, method, key, expires, size), signature)


class LocalStorage:
    """`public_url`: the base every signed URL names; None: the request's origin, else `api_url`."""

    def __init__(self, root: Path, public_url: str | None, secret: bytes, ttl_s: int, api_url: str = "") -> None:
        self.root, self.secret, self.ttl_s = Path(root), secret, ttl_s
        self.public_url = public_url.rstrip("/") if public_url else None
        self.api_url = api_url.rstrip("/")
        self.root.mkdir(parents=True, exist_ok=True)

    def path(self, key: str) -> Path:
        target = (self.root / key).resolve()
        if self.root.resolve() not in target.parents:
            raise StorageError(f"storage key {key!r} leaves the storage root")
        return target

    def put_file(self, key: str, path: Path, content_type: str) -> None:  # noqa: ARG002 (Storage's signature; files on disk have no type)
        target = self.path(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(target.name + ".partial")
        shutil.copyfile(path, partial)
        partial.replace(target)

    def get_file(self, key: str, path: Path) -> None:
        source = self.path(key)
        if not source.is_file():
            raise StorageError(f"storage object {key} does not exist")
        shutil.copyfile(source, path)

    def copy(self, source: str, key: str) -> None:
        """The object at `source` as it is now, kept under `key` too (a job's snapshot of an asset)."""
        path = self.path(source)
        if not path.is_file():
            raise StorageError(f"storage object {source} does not exist")
        self.put_file(key, path, "application/octet-stream")

    def size(self, key: str) -> int | None:
        source = self.path(key)
        return source.stat().st_size if source.is_file() else None

    def head(self, key: str, n: int) -> bytes:
        """The first `n` bytes of an object (content sniffing without a download)."""
        with self.path(key).open("rb") as f:
            return f.read(n)

    def listing(self, prefix: str) -> list[tuple[str, int]]:
        """(key, size) of every object under `prefix` (a folder)."""
        folder = self.path(prefix.rstrip("/"))
        files = [p for p in folder.rglob("*") if p.is_file()] if folder.is_dir() else []
        return [(p.relative_to(self.root.resolve()).as_posix(), p.stat().st_size) for p in files]

    def delete_prefix(self, prefix: str) -> None:
        target = self.path(prefix.rstrip("/"))
        if target.is_dir():
            shutil.rmtree(target, ignore_errors=True)
        else:
            target.unlink(missing_ok=True)

    def _url(self, method: str, key: str, size: int | None = None) -> str:
        expires = int(time.time()) + self.ttl_s
        query = {"expires": str(expires), "signature": sign(self.secret, method, key, expires, size)}
        if size is not None:
            query["size"] = str(size)
        base = self.public_url or _request_origin.get() or self.api_url
        return f"{base}/v1/files/{quote(key)}?{urlencode(query)}"

    def download_url(self, key: str, filename: str | None = None) -> str:  # noqa: ARG002 (Storage's signature)
        return self._url("GET", key)

    def upload_url(self, key: str, size: int) -> tuple[str, dict[str, str]]:
        return self._url("PUT", key, size), {}

    def check(self) -> None:
        if not self.root.is_dir():
            raise StorageError(f"storage directory {self.root} is missing")


class S3Storage:
    def __init__(self, settings: JobsSettings) -> None:
        self.bucket, self.prefix, self.ttl_s = settings.s3_bucket, settings.s3_prefix.strip("/"), settings.url_ttl_s
        self.client = s3_client(settings)
        # presigned URLs are signed for the host clients use (a signature covers the host)
        self.signer = (
            s3_client(settings, settings.s3_public_endpoint_url) if settings.s3_public_endpoint_url else self.client
        )

    def _key(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    def _call(self, what: str, fn: Callable[P, R], *args: P.args, **kwargs: P.kwargs) -> R:
        from botocore.exceptions import BotoCoreError, ClientError  # deferred: botocore

        try:
            return fn(*args, **kwargs)
        except (BotoCoreError, ClientError) as exc:
            raise StorageError(f"S3 {what} failed: {exc}") from exc

    def put_file(self, key: str, path: Path, content_type: str) -> None:
        # upload_file switches to multipart above 8 MiB by itself
        self._call(
            "upload",
            self.client.upload_file,
            str(path),
            self.bucket,
            self._key(key),
            ExtraArgs={"ContentType": content_type},
        )

    def get_file(self, key: str, path: Path) -> None:
        self._call("download", self.client.download_file, self.bucket, self._key(key), str(path))

    def copy(self, source: str, key: str) -> None:
        # a server-side copy (multipart above 8 MiB by itself): the bytes never pass through the API
        self._call(
            "copy",
            self.client.copy,
            {"Bucket": self.bucket, "Key": self._key(source)},
            self.bucket,
            self._key(key),
        )

    def size(self, key: str) -> int | None:
        from botocore.exceptions import ClientError  # deferred: botocore

        try:
            return int(self.client.head_object(Bucket=self.bucket, Key=self._key(key))["ContentLength"])
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return None
            raise StorageError(f"S3 head failed: {exc}") from exc

    def head(self, key: str, n: int) -> bytes:
        body = self._call(
            "read", self.client.get_object, Bucket=self.bucket, Key=self._key(key), Range=f"bytes=0-{n - 1}"
        )
        return bytes(body["Body"].read())

    def delete_prefix(self, prefix: str) -> None:
        pages = self._call(
            "list", self.client.get_paginator("list_objects_v2").paginate, Bucket=self.bucket, Prefix=self._key(prefix)
        )
        for page in pages:
            objects: list[ObjectIdentifierTypeDef] = [{"Key": o["Key"]} for o in page.get("Contents", [])]
            if objects:
                self._call("delete", self.client.delete_objects, Bucket=self.bucket, Delete={"Objects": objects})

    def listing(self, prefix: str) -> list[tuple[str, int]]:
        pages = self._call(
            "list", self.client.get_paginator("list_objects_v2").paginate, Bucket=self.bucket, Prefix=self._key(prefix)
        )
        strip = len(self._key(""))
        return [(o["Key"][strip:], int(o["Size"])) for page in pages for o in page.get("Contents", [])]

    def download_url(self, key: str, filename: str | None = None) -> str:
        params = {"Bucket": self.bucket, "Key": self._key(key)}
        if filename:
            params["ResponseContentDisposition"] = f'attachment; filename="{filename}"'
        return str(
            self._call("presign", self.signer.generate_presigned_url, "get_object", Params=params, ExpiresIn=self.ttl_s)
        )

    def upload_url(self, key: str, size: int) -> tuple[str, dict[str, str]]:
        # `ContentLength` is signed (X-Amz-SignedHeaders=content-length;host): S3 refuses a PUT of another size
        # with SignatureDoesNotMatch. HTTP clients send the header themselves; browsers may not set it.
        url = self._call(
            "presign",
            self.signer.generate_presigned_url,
            "put_object",
            Params={"Bucket": self.bucket, "Key": self._key(key), "ContentLength": size},
            ExpiresIn=self.ttl_s,
        )
        return str(url), {}

    def check(self) -> None:
        self._call("head bucket", self.client.head_bucket, Bucket=self.bucket)

    def ensure_bucket(self) -> None:
        from botocore.exceptions import ClientError  # deferred: botocore

        try:
            self.client.head_bucket(Bucket=self.bucket)
        except ClientError:
            self._call("create bucket", self.client.create_bucket, Bucket=self.bucket)


def storage_for(settings: JobsSettings) -> Storage:
    if settings.storage == "s3":
        return S3Storage(settings)
    assert settings.storage_dir is not None
    return LocalStorage(
        settings.storage_dir, settings.public_url, settings.signing_key(), settings.url_ttl_s, settings.api_url
    )
