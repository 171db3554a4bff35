"""The synchronous client: `Client().edits.create(...)`, `.wait(...)`, `.download(...)`; `batches`,
`previews`, `uploads`, `emotions` likewise. Made from `aio.py` by `clients/python/unasync_client.py`: do not edit.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Generic, TypeVar

import httpx
from pydantic import BaseModel

from cmet_client import calls, models
from cmet_client.calls import Call, Flow, Inputs, Source
from cmet_client.errors import ApiError
from cmet_client.waiting import STREAM_READ_S, BatchWatch, EventParser, Following, Watch

T = TypeVar("T")
F = TypeVar("F", bound=BaseModel)
J = TypeVar("J", models.Job, models.Preview)
CHUNK = 1 << 20


def _chunks(path: Path) -> Iterator[bytes]:
    """A file as a streamed body, one local chunk at a time."""
    with path.open("rb") as handle:
        while chunk := handle.read(CHUNK):
            yield chunk


class Client:
    """A connection to one cmet server. `base_url` defaults to `CMET_SERVER`, `api_key` to `CMET_API_KEY`."""

    def __init__(
        self,
        base_url: str | None = None,
        api_key: str | None = None,
        *,
        timeout: float = 60.0,
        max_retries: int = 3,
        upload_threshold: int = calls.UPLOAD_THRESHOLD,
    ) -> None:
        url, self.auth = calls.connection(base_url, api_key)
        self.http = httpx.Client(base_url=url, timeout=timeout, follow_redirects=True)
        self.max_retries, self.upload_threshold = max_retries, upload_threshold
        self.edits = Edits(self)
        self.previews = Previews(self)
        self.batches = Batches(self)
        self.uploads = Uploads(self)
        self.emotions = Emotions(self)

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.http.close()

    def send(self, call: Call) -> httpx.Response:
        """One call, retried by `calls.retry_delay`; an error status raises ApiError."""
        headers = dict(call.headers) | ({} if call.signed else self.auth)
        attempt = 0
        while True:
            try:
                response = self._once(call, headers)
            except httpx.TransportError as exc:
                delay = calls.retry_delay(call, attempt, self.max_retries, None, exc)
                if delay is None:
                    raise
            else:
                delay = calls.retry_delay(call, attempt, self.max_retries, response, None)
                if delay is None:
                    if response.is_error:
                        raise ApiError.of(response)
                    return response
            time.sleep(delay)
            attempt += 1

    def _once(self, call: Call, headers: dict[str, str]) -> httpx.Response:
        params = dict(call.params) or None  # an empty mapping would drop a presigned URL's own query
        timeout = httpx.USE_CLIENT_DEFAULT if call.timeout is None else call.timeout
        if call.body_file is not None:
            headers["Content-Length"] = str(call.body_file.stat().st_size)
            body = _chunks(call.body_file)
            return self.http.request(
                call.method, call.url, content=body, headers=headers, params=params, timeout=timeout
            )
        if call.files:
            files = [(name, (path.name, path.read_bytes())) for name, path in call.files]  # at most the threshold
            return self.http.request(
                call.method,
                call.url,
                data=dict(call.fields),
                files=files,
                headers=headers,
                params=params,
                timeout=timeout,
            )
        data = dict(call.fields) or None
        return self.http.request(
            call.method, call.url, json=call.json, data=data, headers=headers, params=params, timeout=timeout
        )

    def rotate_webhook_secret(self) -> models.WebhookSecret:
        """A new webhook secret for this key (shown once); the old one keeps signing beside it for the
        server's grace period (`grace_s`), so a receiver can switch over without losing a delivery."""
        return self.run(calls.rotate_secret())

    def run(self, flow: Flow[T]) -> T:
        """Drive a flow to its result."""
        try:
            call = next(flow)
            while True:
                call = flow.send(self.send(call))
        except StopIteration as stop:
            result: T = stop.value
            return result

    def download(self, url: str, path: str | os.PathLike[str]) -> Path:
        """A presigned URL to a file, written whole or not at all."""
        target = Path(path)
        partial = target.with_name(target.name + ".partial")
        with self.http.stream("GET", url) as response:
            if response.is_error:
                response.read()
                raise ApiError.of(response)
            with partial.open("wb") as out:
                for chunk in response.iter_bytes(CHUNK):
                    out.write(chunk)
        partial.replace(target)
        return target

    def follow(self, path: str, watch: Following[F], poll_s: float) -> F:
        """The resource at `path` once it ended: read from its event stream (`path/events`), else by
        polling `path` every `poll_s` seconds when the stream cannot be had or ends early."""
        final = self._stream(f"{path}/events", watch)
        while final is None:
            current = self.run(calls.fetch(watch.model, path))
            if watch.seen(current):
                final = current
                break
            left = watch.left()
            time.sleep(poll_s if left is None else min(poll_s, left))
        return watch.done(final)

    def _stream(self, path: str, watch: Following[F]) -> F | None:
        """The final resource from the event stream, or None when the stream failed or ended early."""
        parser = EventParser()
        timeout = httpx.Timeout(10.0, read=STREAM_READ_S)
        try:
            with self.http.stream("GET", path, headers=self.auth, timeout=timeout) as response:
                if response.status_code != 200 or "text/event-stream" not in response.headers.get("content-type", ""):
                    return None
                for line in response.iter_lines():
                    found = parser.line(line)
                    final = watch.event(*found) if found is not None else None
                    if final is not None:
                        return final
                    watch.left()
        except httpx.TransportError:
            return None
        return None


class _Jobs(Generic[J]):
    """What edits and previews share: read, list, follow, download, cancel, delete."""

    path: str
    model: type[J]
    listing: type[models.JobList] | type[models.PreviewList]

    def __init__(self, client: Client) -> None:
        self.client = client

    def get(self, job_id: str) -> J:
        return self.client.run(calls.fetch(self.model, f"{self.path}/{job_id}"))

    def list(self, state: str | None = None, limit: int = 20, cursor: str | None = None) -> list[J]:
        params: dict[str, str | int] = {"limit": limit} | ({"state": state} if state else {})
        params |= {"cursor": cursor} if cursor else {}
        page = self.client.run(calls.fetch(self.listing, self.path, params))
        return list(page.data)  # type: ignore[arg-type]

    def cancel(self, job_id: str) -> J:
        return self.client.run(calls.post(self.model, f"{self.path}/{job_id}/cancel"))

    def delete(self, job_id: str) -> None:
        self.client.run(calls.delete(f"{self.path}/{job_id}"))

    def wait(
        self,
        job: str | J,
        *,
        progress: Callable[[J], object] | None = None,
        timeout: float | None = None,
        poll_s: float = 1.0,
        raise_on_failure: bool = True,
    ) -> J:
        """Follow the job to its end over the event stream, polling when the stream cannot be had;
        `progress` sees every change. A failed or canceled job raises JobFailedError (with its code)
        unless `raise_on_failure=False`."""
        job_id = job if isinstance(job, str) else job.id
        watch = Watch(self.model, progress, timeout, raise_on_failure)
        return self.client.follow(f"{self.path}/{job_id}", watch, poll_s)

    def download(self, job: str | J, path: str | os.PathLike[str]) -> Path:
        """The finished job's file (an edit's mp4, a sheet's PNG) to `path`."""
        current = self.get(job) if isinstance(job, str) else job
        return self.client.download(calls.download_url(current), path)

    def run(
        self,
        output: str | os.PathLike[str],
        *,
        progress: Callable[[J], object] | None = None,
        timeout: float | None = None,
        **create: Any,
    ) -> J:
        """Submit, follow and download in one call: `create`'s arguments, then the file at `output`."""
        job = self.wait(self.create(**create), progress=progress, timeout=timeout)
        self.download(job, output)
        return job

    def create(self, **kwargs: Any) -> J:
        raise NotImplementedError


class Edits(_Jobs[models.Job]):
    path, model, listing = "/v1/edits", models.Job, models.JobList

    def create(
        self,
        video: Source | None = None,
        *,
        speech_track: Source | None = None,
        pose_video: Source | None = None,
        eye_video: Source | None = None,
        expression_reference: Source | None = None,
        speech: Sequence[Source] = (),
        idempotency_key: str | None = None,
        wait_s: float | None = None,
        **options: Any,
    ) -> models.Job:
        """Queue an edit. `video` (and `speech_track`, `pose_video`, `expression_reference`, `eye_video`, `speech`
        clips) is a path, an `https://` URL or an uploaded asset; `options` are `EditCreate`'s fields (`emotion`,
        `intensity`, `timeline`, `preview_s`, `webhook_url`, ...)."""
        singles = {"video": video, "speech_track": speech_track, "pose_video": pose_video}
        singles |= {"expression_reference": expression_reference, "eye_video": eye_video}
        inputs = Inputs(singles, speech, self.client.upload_threshold)
        flow = calls.submit(self.path, models.EditCreate, models.Job, inputs, options, idempotency_key, wait_s)
        return self.client.run(flow)

    def estimate(self, video: Source | None = None, **options: Any) -> models.EditEstimate:
        """`create`'s checks with `dry_run`: nothing is stored; the frames, size and estimated seconds."""
        inputs = Inputs({"video": video}, (), self.client.upload_threshold)
        dry = options | {"dry_run": True}
        flow = calls.submit(self.path, models.EditCreate, models.EditEstimate, inputs, dry, None)
        return self.client.run(flow)


class Previews(_Jobs[models.Preview]):
    path, model, listing = "/v1/previews", models.Preview, models.PreviewList

    def create(
        self,
        video: Source | None = None,
        *,
        idempotency_key: str | None = None,
        wait_s: float | None = None,
        **options: Any,
    ) -> models.Preview:
        """Queue a contact sheet: `emotions` (rows) x `intensities` (columns) of one frame of `video`."""
        inputs = Inputs({"video": video}, (), self.client.upload_threshold)
        flow = calls.submit(self.path, models.PreviewCreate, models.Preview, inputs, options, idempotency_key, wait_s)
        return self.client.run(flow)


class Batches:
    """Several edits in one request, accepted or refused whole, followed together."""

    path = "/v1/batches"

    def __init__(self, client: Client) -> None:
        self.client = client

    def create(
        self,
        edits: Sequence[Mapping[str, Any]],
        *,
        idempotency_key: str | None = None,
        **options: Any,
    ) -> models.Batch:
        """Queue `edits`, each a mapping of `edits.create`'s arguments (`video` as a path, URL or asset,
        `emotion`, `intensity`, ...); local files are uploaded first, once each. `options` are
        `BatchCreate`'s other fields (`webhook_url` for `batch.completed`)."""
        return self.client.run(calls.batch(edits, options, idempotency_key))

    def get(self, batch_id: str) -> models.Batch:
        return self.client.run(calls.fetch(models.Batch, f"{self.path}/{batch_id}"))

    def wait(
        self,
        batch: str | models.Batch,
        *,
        progress: Callable[[models.Job], object] | None = None,
        timeout: float | None = None,
        poll_s: float = 1.0,
    ) -> models.Batch:
        """The batch once every edit ended (`counts` says how); `progress` sees each edit's changes as the
        batch's event stream tells them. Each edit's own result is `edits.get(id)` of `edit_ids`."""
        batch_id = batch if isinstance(batch, str) else batch.id
        return self.client.follow(f"{self.path}/{batch_id}", BatchWatch(progress, timeout), poll_s)


class Uploads:
    """Assets: files uploaded once (through a presigned PUT) and named by id in later submissions."""

    def __init__(self, client: Client) -> None:
        self.client = client

    def create(self, path: str | os.PathLike[str], kind: str = "video") -> models.Upload:
        return self.client.run(calls.upload(Path(path), kind))

    def get(self, asset_id: str) -> models.Asset:
        return self.client.run(calls.fetch(models.Asset, f"/v1/uploads/{asset_id}"))

    def list(self, limit: int = 20) -> list[models.Asset]:
        return list((self.client.run(calls.fetch(models.AssetList, "/v1/uploads", {"limit": limit}))).data)

    def delete(self, asset_id: str) -> None:
        self.client.run(calls.delete(f"/v1/uploads/{asset_id}"))


class Emotions:
    """The built-in emotions and this key's own, made from speech clips."""

    def __init__(self, client: Client) -> None:
        self.client = client

    def list(self) -> list[models.Emotion]:
        return list((self.client.run(calls.fetch(models.EmotionList, "/v1/emotions"))).data)

    def create(self, name: str, speech: Sequence[str | os.PathLike[str]]) -> models.Emotion:
        return self.client.run(calls.new_emotion(name, speech))

    def delete(self, emotion_id: str) -> None:
        self.client.run(calls.delete(f"/v1/emotions/{emotion_id}"))
