"""The asynchronous client: `AsyncClient` with the same resources and verbs as `Client`, awaited.

It drives the same flows (`calls.py`) and the same `Watch`; only sending, streaming and sleeping differ.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import Any, Generic, TypeVar

import httpx

from cmet_client import calls, models
from cmet_client.calls import Call, Flow, Inputs, Source
from cmet_client.errors import ApiError
from cmet_client.waiting import STREAM_READ_S, EventParser, Watch

T = TypeVar("T")
J = TypeVar("J", models.Job, models.Preview)
CHUNK = 1 << 20


async def _chunks(path: Path) -> AsyncIterator[bytes]:
    """A file as an async body; each read is one local chunk, short enough for the event loop."""
    with path.open("rb") as handle:
        while chunk := handle.read(CHUNK):
            yield chunk


class AsyncClient:
    """`Client`, awaited: `async with AsyncClient() as c: job = await c.edits.create(...)`."""

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
        self.http = httpx.AsyncClient(base_url=url, timeout=timeout, follow_redirects=True)
        self.max_retries, self.upload_threshold = max_retries, upload_threshold
        self.edits = AsyncEdits(self)
        self.previews = AsyncPreviews(self)
        self.uploads = AsyncUploads(self)
        self.emotions = AsyncEmotions(self)

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self.http.aclose()

    async def send(self, call: Call) -> httpx.Response:
        headers = dict(call.headers) | ({} if call.signed else self.auth)
        attempt = 0
        while True:
            try:
                response = await self._once(call, headers)
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
            await asyncio.sleep(delay)
            attempt += 1

    async def _once(self, call: Call, headers: dict[str, str]) -> httpx.Response:
        params = dict(call.params) or None  # an empty mapping would drop a presigned URL's own query
        timeout = httpx.USE_CLIENT_DEFAULT if call.timeout is None else call.timeout
        if call.body_file is not None:
            headers["Content-Length"] = str(call.body_file.stat().st_size)
            return await self.http.request(
                call.method, call.url, content=_chunks(call.body_file), headers=headers, params=params
            )
        if call.files:
            files = [(name, (path.name, path.read_bytes())) for name, path in call.files]  # at most the threshold
            return await self.http.request(
                call.method,
                call.url,
                data=dict(call.fields),
                files=files,
                headers=headers,
                params=params,
                timeout=timeout,
            )
        data = dict(call.fields) or None
        return await self.http.request(
            call.method, call.url, json=call.json, data=data, headers=headers, params=params, timeout=timeout
        )

    async def rotate_webhook_secret(self) -> models.WebhookSecret:
        return await self.run(calls.rotate_secret())

    async def run(self, flow: Flow[T]) -> T:
        try:
            call = next(flow)
            while True:
                call = flow.send(await self.send(call))
        except StopIteration as stop:
            result: T = stop.value
            return result

    async def download(self, url: str, path: str | os.PathLike[str]) -> Path:
        target = Path(path)
        partial = target.with_name(target.name + ".partial")
        async with self.http.stream("GET", url) as response:
            if response.is_error:
                await response.aread()
                raise ApiError.of(response)
            with partial.open("wb") as out:
                async for chunk in response.aiter_bytes(CHUNK):
                    out.write(chunk)
        partial.replace(target)
        return target


class _AsyncJobs(Generic[J]):
    path: str
    model: type[J]
    listing: type[models.JobList] | type[models.PreviewList]

    def __init__(self, client: AsyncClient) -> None:
        self.client = client

    async def get(self, job_id: str) -> J:
        return await self.client.run(calls.fetch(self.model, f"{self.path}/{job_id}"))

    async def list(self, state: str | None = None, limit: int = 20) -> list[J]:
        params: dict[str, str | int] = {"limit": limit} | ({"state": state} if state else {})
        page = await self.client.run(calls.fetch(self.listing, self.path, params))
        return list(page.data)  # type: ignore[arg-type]

    async def cancel(self, job_id: str) -> J:
        return await self.client.run(calls.post(self.model, f"{self.path}/{job_id}/cancel"))

    async def delete(self, job_id: str) -> None:
        await self.client.run(calls.delete(f"{self.path}/{job_id}"))

    async def wait(
        self,
        job: str | J,
        *,
        progress: Callable[[J], object] | None = None,
        timeout: float | None = None,
        poll_s: float = 1.0,
        raise_on_failure: bool = True,
    ) -> J:
        """As `Client`'s `wait`: the event stream, else polling; `progress` sees every change."""
        job_id = job if isinstance(job, str) else job.id
        watch = Watch(self.model, progress, timeout, raise_on_failure)
        final = await self._stream(job_id, watch)
        while final is None:
            current = await self.get(job_id)
            if watch.seen(current):
                final = current
                break
            left = watch.left()
            await asyncio.sleep(poll_s if left is None else min(poll_s, left))
        return watch.done(final)

    async def _stream(self, job_id: str, watch: Watch[J]) -> J | None:
        parser = EventParser()
        timeout = httpx.Timeout(10.0, read=STREAM_READ_S)
        try:
            async with self.client.http.stream(
                "GET", f"{self.path}/{job_id}/events", headers=self.client.auth, timeout=timeout
            ) as response:
                if response.status_code != 200 or "text/event-stream" not in response.headers.get("content-type", ""):
                    return None
                async for line in response.aiter_lines():
                    found = parser.line(line)
                    final = watch.event(*found) if found is not None else None
                    if final is not None:
                        return final
                    watch.left()
        except httpx.TransportError:
            return None
        return None

    async def download(self, job: str | J, path: str | os.PathLike[str]) -> Path:
        current = await self.get(job) if isinstance(job, str) else job
        return await self.client.download(calls.download_url(current), path)


class AsyncEdits(_AsyncJobs[models.Job]):
    path, model, listing = "/v1/edits", models.Job, models.JobList

    async def create(
        self,
        video: Source | None = None,
        *,
        speech_track: Source | None = None,
        pose_video: Source | None = None,
        eye_video: Source | None = None,
        speech: Sequence[Source] = (),
        idempotency_key: str | None = None,
        wait_s: float | None = None,
        **options: Any,
    ) -> models.Job:
        singles = {"video": video, "speech_track": speech_track, "pose_video": pose_video, "eye_video": eye_video}
        inputs = Inputs(singles, speech, self.client.upload_threshold)
        return await self.client.run(
            calls.submit(self.path, models.EditCreate, models.Job, inputs, options, idempotency_key, wait_s)
        )

    async def estimate(self, video: Source | None = None, **options: Any) -> models.EditEstimate:
        inputs = Inputs({"video": video}, (), self.client.upload_threshold)
        options = options | {"dry_run": True}
        return await self.client.run(
            calls.submit(self.path, models.EditCreate, models.EditEstimate, inputs, options, None)
        )


class AsyncPreviews(_AsyncJobs[models.Preview]):
    path, model, listing = "/v1/previews", models.Preview, models.PreviewList

    async def create(
        self,
        video: Source | None = None,
        *,
        idempotency_key: str | None = None,
        wait_s: float | None = None,
        **options: Any,
    ) -> models.Preview:
        inputs = Inputs({"video": video}, (), self.client.upload_threshold)
        return await self.client.run(
            calls.submit(self.path, models.PreviewCreate, models.Preview, inputs, options, idempotency_key, wait_s)
        )


class AsyncUploads:
    def __init__(self, client: AsyncClient) -> None:
        self.client = client

    async def create(self, path: str | os.PathLike[str], kind: str = "video") -> models.Upload:
        return await self.client.run(calls.upload(Path(path), kind))

    async def get(self, asset_id: str) -> models.Asset:
        return await self.client.run(calls.fetch(models.Asset, f"/v1/uploads/{asset_id}"))

    async def delete(self, asset_id: str) -> None:
        await self.client.run(calls.delete(f"/v1/uploads/{asset_id}"))


class AsyncEmotions:
    def __init__(self, client: AsyncClient) -> None:
        self.client = client

    async def list(self) -> list[models.Emotion]:
        return list((await self.client.run(calls.fetch(models.EmotionList, "/v1/emotions"))).data)

    async def create(self, name: str, speech: Sequence[str | os.PathLike[str]]) -> models.Emotion:
        return await self.client.run(calls.new_emotion(name, speech))

    async def delete(self, emotion_id: str) -> None:
        await self.client.run(calls.delete(f"/v1/emotions/{emotion_id}"))
