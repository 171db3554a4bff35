"""The client's requests as plain data, and the flows that chain them, free of any I/O.

A flow is a generator: it yields a `Call`, receives the `httpx.Response` and returns its result at
the end. The sync client (`client.py`) and the async one (`aio.py`) each drive the same flows, so an
upload-then-submit or a retry rule is written once. Retries are the driver's: a call is retried when
nothing was done on the server (a refused connection, 429/503) or when repeating it is harmless (a
GET, a PUT, a DELETE, or a submission carrying its `Idempotency-Key`, which the server answers with
the same job; decision 0003 of the server).
"""

from __future__ import annotations

import json
import mimetypes
import os
import random
import uuid
from collections.abc import Generator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx
from pydantic import BaseModel, ValidationError

from cmet_client import models
from cmet_client.errors import CmetError, InvalidRequestError

T = TypeVar("T")
M = TypeVar("M", bound=BaseModel)
Flow = Generator["Call", httpx.Response, T]

Source = str | os.PathLike[str] | models.Upload | models.Asset
"""An input: a local file's path, an `https://` URL the server fetches, or an uploaded asset (its id)."""

RETRY_STATUSES = frozenset({429, 502, 503, 504})
REFUSED_UNDONE = frozenset({429, 503})
"""Statuses by which the server says it did nothing: safe to send again whatever the method."""
MAX_RETRY_AFTER_S = 30.0
UPLOAD_THRESHOLD = 16 << 20
"""Files up to this size go in the submission itself (multipart); larger ones through a presigned upload."""


@dataclass(frozen=True)
class Call:
    """One HTTP request. `url` is a path under the server's base URL, or a presigned absolute URL
    (`signed`: sent without the API key, which must not leak to an object store)."""

    method: str
    url: str
    json: Any = None
    fields: Mapping[str, str | list[str]] = field(default_factory=dict)
    files: Sequence[tuple[str, Path]] = ()
    body_file: Path | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    params: Mapping[str, str | int] = field(default_factory=dict)
    signed: bool = False
    timeout: float | None = None
    """Seconds for this call when it needs more than the client's (a submission that waits)."""

    @property
    def idempotent(self) -> bool:
        return self.method in ("GET", "HEAD", "PUT", "DELETE") or "Idempotency-Key" in self.headers


def retry_delay(
    call: Call, attempt: int, retries: int, response: httpx.Response | None, error: Exception | None
) -> float | None:
    """Seconds to wait before sending `call` again after try number `attempt` (0 = the first), or None."""
    if attempt >= retries:
        return None
    backoff = min(0.5 * 2**attempt, 8.0) * random.uniform(0.8, 1.2)
    if error is not None:
        sent = not isinstance(error, httpx.ConnectError | httpx.ConnectTimeout)
        return backoff if call.idempotent or not sent else None
    assert response is not None
    if response.status_code not in RETRY_STATUSES:
        return None
    if response.status_code not in REFUSED_UNDONE and not call.idempotent:
        return None
    asked = response.headers.get("retry-after", "")
    return min(float(asked), MAX_RETRY_AFTER_S) if asked.isdigit() else backoff


def parsed(model: type[M], response: httpx.Response) -> M:
    return model.model_validate_json(response.content)


def classify(source: Source) -> tuple[str, str | Path]:
    """`("url", url)`, `("asset", id)` or `("path", Path)`."""
    if isinstance(source, models.Upload | models.Asset):
        return "asset", source.id
    text = os.fspath(source)
    if text.startswith(("https://", "http://")):
        return "url", text
    if text.startswith("ast_") and not Path(text).exists():
        return "asset", text
    path = Path(text)
    if not path.is_file():
        raise FileNotFoundError(f"no such file: {path}")
    return "path", path


def upload(path: Path, kind: str) -> Flow[models.Upload]:
    """A presigned upload: ask for an asset and its URL, then PUT the file there."""
    content_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    body = models.UploadCreate(
        kind=kind,  # type: ignore[arg-type]
        size=path.stat().st_size,  # the URL is signed for exactly this many bytes
        filename=path.name[:300],
        content_type=content_type,
    )
    made = parsed(models.Upload, (yield Call("POST", "/v1/uploads", json=body.model_dump(mode="json"))))
    yield Call("PUT", made.upload_url, body_file=path, headers=made.headers, signed=True)
    return made


def form_fields(body: Mapping[str, Any]) -> dict[str, str | list[str]]:
    """A JSON body as multipart fields, the way the server reads them back: lists repeat their field,
    `face_box` is `x,y,w,h`, a timeline is JSON text."""
    fields: dict[str, str | list[str]] = {}
    for name, value in body.items():
        if value is None:
            continue
        if name == "face_box":
            fields[name] = ",".join(str(v) for v in value)
        elif isinstance(value, list):
            fields[name] = [str(v) for v in value]
        elif isinstance(value, dict):
            fields[name] = json.dumps(value)
        elif isinstance(value, bool):
            fields[name] = "true" if value else "false"
        else:
            fields[name] = str(value)
    return fields


@dataclass(frozen=True)
class Inputs:
    """A submission's file-like inputs by field name (`video`, `speech_track`, `pose_video`,
    `expression_reference`, `eye_video`) and its speech clips; each becomes a `<name>_url`/`<name>_asset` field or a
    multipart part."""

    singles: Mapping[str, Source | None]
    speech: Sequence[Source] = ()
    threshold: int = UPLOAD_THRESHOLD
    uploaded: dict[Path, str] = field(default_factory=dict)
    """Asset ids of the files uploaded so far: a batch uploads a file its edits share once."""


VIDEO_KINDS = ("video", "pose_video", "expression_reference", "eye_video")
"""The inputs uploaded as assets of kind `video` (a photo or a clip); the others are `speech`."""


def _placed(inputs: Inputs, body: dict[str, Any]) -> Flow[list[tuple[str, Path]]]:
    parts: list[tuple[str, Path]] = []
    named = [(name, source, False) for name, source in inputs.singles.items() if source is not None]
    for name, source, many in named + [("speech", clip, True) for clip in inputs.speech]:
        kind, value = classify(source)
        if isinstance(value, Path):
            if value.stat().st_size <= inputs.threshold:
                parts.append((name, value))
                continue
            kind, path = "asset", value.resolve()
            if path not in inputs.uploaded:
                made = yield from upload(path, "video" if name in VIDEO_KINDS else "speech")
                inputs.uploaded[path] = made.id
            value = inputs.uploaded[path]
        if many:
            body.setdefault(f"speech_{kind}s", []).append(value)
        else:
            body[f"{name}_{kind}"] = value
    return parts


def submit(
    path: str,
    request: type[BaseModel],
    answer: type[M],
    inputs: Inputs,
    options: Mapping[str, Any],
    key: str | None,
    wait_s: float | None = None,
) -> Flow[M]:
    """Place the inputs, check the body against the contract's request model (a misspelt option fails
    here, before anything is sent), then POST it once under one Idempotency-Key for every retry. With
    `wait_s`, `Prefer: wait=N` asks the server to answer with the finished job if it ends by then."""
    body = dict(options)
    parts = yield from _placed(inputs, body)
    checked = _checked(request, body)
    headers = _once_only(key)
    timeout = None
    if wait_s:
        headers["Prefer"] = f"wait={int(wait_s)}"
        timeout = wait_s + 60.0
    if parts:
        call = Call("POST", path, fields=form_fields(checked), files=parts, headers=headers, timeout=timeout)
    else:
        call = Call("POST", path, json=checked, headers=headers, timeout=timeout)
    return parsed(answer, (yield call))


def _checked(request: type[BaseModel], body: Mapping[str, Any]) -> dict[str, Any]:
    """The body as the contract's request model reads it (only the fields given); a misspelt option or a
    bad value raises InvalidRequestError before anything is sent."""
    try:
        return request.model_validate(body).model_dump(mode="json", exclude_unset=True)
    except ValidationError as exc:
        raise InvalidRequestError(str(exc)) from None


def _once_only(key: str | None) -> dict[str, str]:
    """The Idempotency-Key every retry of a submission repeats: the caller's, or a fresh one."""
    return {"Idempotency-Key": key or f"cmet-client-{uuid.uuid4()}"}


INPUTS = ("video", "speech_track", "pose_video", "expression_reference")
"""An edit's file-like inputs, given as a path, an `https://` URL or an asset, as `edits.create` takes them."""


def batch(edits: Sequence[Mapping[str, Any]], options: Mapping[str, Any], key: str | None) -> Flow[models.Batch]:
    """A batch of edits, each given as `edits.create`'s arguments (`video`, `speech_track`, `pose_video`,
    `speech`, and `EditCreate`'s fields). A batch is JSON: local files go through presigned uploads (once
    each, however many edits name them), then the whole body is checked and sent under one Idempotency-Key."""
    uploaded: dict[Path, str] = {}
    bodies = []
    for edit in edits:
        body = {name: value for name, value in edit.items() if name not in (*INPUTS, "speech")}
        inputs = Inputs({name: edit.get(name) for name in INPUTS}, edit.get("speech", ()), -1, uploaded)
        yield from _placed(inputs, body)  # threshold -1: every file is uploaded, none is a part
        bodies.append(body)
    checked = _checked(models.BatchCreate, dict(options) | {"edits": bodies})
    return parsed(models.Batch, (yield Call("POST", "/v1/batches", json=checked, headers=_once_only(key))))


def fetch(model: type[M], path: str, params: Mapping[str, str | int] | None = None) -> Flow[M]:
    return parsed(model, (yield Call("GET", path, params=params or {})))


def post(model: type[M], path: str) -> Flow[M]:
    return parsed(model, (yield Call("POST", path)))


def delete(path: str) -> Flow[None]:
    yield Call("DELETE", path)


def new_emotion(name: str, speech: Sequence[str | os.PathLike[str]]) -> Flow[models.Emotion]:
    files = [("speech", Path(clip)) for clip in speech]
    return parsed(models.Emotion, (yield Call("POST", "/v1/emotions", fields={"name": name}, files=files)))


DEFAULT_SERVER = "http://127.0.0.1:8000"


def connection(base_url: str | None, api_key: str | None) -> tuple[str, dict[str, str]]:
    """The server's URL (argument, else `CMET_SERVER`, else a local `cmet serve`) and the auth header
    (argument, else `CMET_API_KEY`)."""
    key = api_key or os.environ.get("CMET_API_KEY")
    if not key:
        raise CmetError("no API key: pass api_key=... or set CMET_API_KEY (`cmet keys create` prints one)")
    url = (base_url or os.environ.get("CMET_SERVER") or DEFAULT_SERVER).rstrip("/")
    return url, {"Authorization": f"Bearer {key}"}


def download_url(job: BaseModel) -> str:
    """Where a finished job's file is: an edit's or clip's `output_url`, a sheet's `sheet_url`."""
    url = getattr(job, "output_url", None) or getattr(job, "sheet_url", None)
    if not url:
        raise CmetError(f"{getattr(job, 'id', '?')} has nothing to download (state {getattr(job, 'state', '?')})")
    return str(url)


def rotate_secret() -> Flow[models.WebhookSecret]:
    return parsed(models.WebhookSecret, (yield Call("POST", "/v1/keys/self/webhook-secret")))
