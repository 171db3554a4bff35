"""The webhooks a job sends, described in the OpenAPI document's `webhooks:` section (one entry per
event type, with its payload schema, the three Standard Webhooks headers and an example). Nothing is
served here: `cmet_jobs.webhooks` sends them; these routes only document what a receiver gets."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, get_args

from fastapi import FastAPI, Header

from cmet_jobs.schemas import ALL_EVENTS, BatchEvent, BatchEventType, EditEvent, PreviewEvent

_HEADERS = (
    "Every delivery is a POST of compact JSON with the headers of Standard Webhooks "
    "(https://www.standardwebhooks.com/): `webhook-id` (the same for every attempt and replay of this event), "
    "`webhook-timestamp` (seconds since the epoch) and `webhook-signature`: `v1,` and the base64 HMAC-SHA256 "
    "of `{webhook-id}.{webhook-timestamp}.{body}` under the key's secret (the `whsec_...` printed by "
    "`cmet keys create`, rotated by `POST /v1/keys/self/webhook-secret`; during the grace period two "
    "space-separated signatures). Refuse a timestamp more than 5 minutes off. Answer 2xx within "
    "`CMET_WEBHOOK_TIMEOUT_S`; anything else is retried for about 28 hours (410 stops this job's deliveries). "
    "A job subscribes with `webhook_url` and `webhook_events` (default: all but `edit.progress`)."
)
WebhookId = Annotated[str, Header(description="The event's id, e.g. `msg_<job>_succeeded`.")]
WebhookTimestamp = Annotated[str, Header(description="Seconds since the epoch when this attempt was signed.")]
WebhookSignature = Annotated[str, Header(description="`v1,<base64>`, several separated by spaces.")]

_JOB = {
    "id": "edt_5f0c1e2d3c4b4a59a8e7f6d5c4b3a291",
    "state": "succeeded",
    "progress": 1.0,
    "stage": "render",
    "created_at": "2026-12-07T21:00:00Z",
    "updated_at": "2026-12-07T21:00:09Z",
    "started_at": "2026-12-07T21:00:01Z",
    "finished_at": "2026-12-07T21:00:09Z",
    "error": None,
}
_EXAMPLES: dict[str, dict[str, Any]] = {
    "edit": _JOB
    | {
        "object": "edit",
        "emotion": "happy",
        "intensity": 1.0,
        "result": {"frames": 250, "fps": 25.0, "duration_s": 10.0, "width": 1280, "height": 720},
        "output_url": "https://cmet.example.com/v1/files/jobs/edt_5f0c/output.mp4?expires=1765141209&signature=9c1f",
    },
    "preview": _JOB
    | {
        "object": "preview",
        "kind": "sheet",
        "emotions": ["happy", "sad"],
        "intensities": [1.0],
        "frame": 12,
        "preview_s": None,
        "preview_start_s": None,
        "sheet_url": "https://cmet.example.com/v1/files/jobs/edt_5f0c/sheet.png?expires=1765141209&signature=9c1f",
        "cells": [],
        "output_url": None,
        "result": None,
    },
}


def edit_event(
    body: EditEvent, webhook_id: WebhookId, webhook_timestamp: WebhookTimestamp, webhook_signature: WebhookSignature
) -> None:
    """Sent to an edit's `webhook_url`."""


def preview_event(
    body: PreviewEvent, webhook_id: WebhookId, webhook_timestamp: WebhookTimestamp, webhook_signature: WebhookSignature
) -> None:
    """Sent to a preview's `webhook_url`."""


def batch_event(
    body: BatchEvent, webhook_id: WebhookId, webhook_timestamp: WebhookTimestamp, webhook_signature: WebhookSignature
) -> None:
    """Sent to a batch's `webhook_url` (`POST /v1/batches`) once its last edit ended."""


_WHEN = {
    "running": "a worker started the job",
    "progress": "the job's progress passed another tenth (opt in: not in the default `webhook_events`)",
    "succeeded": "the job succeeded; the URLs in `data` are signed for `CMET_URL_TTL_S` from the delivery",
    "failed": "the job failed; `data.error.code` says why",
    "canceled": "the job was canceled",
    "completed": "every edit of the batch ended; `data.counts` says how (each edit sends its own events too)",
}

_UNFINISHED = {"finished_at": None, "result": None, "output_url": None}
_STATES: dict[str, dict[str, Any]] = {
    "running": _UNFINISHED | {"state": "running", "progress": 0.0, "stage": "starting"},
    "progress": _UNFINISHED | {"state": "running", "progress": 0.3, "stage": "encode"},
    "succeeded": {"state": "succeeded"},
    "failed": _UNFINISHED | {"state": "failed", "error": {"code": "no_face", "message": "no face found in the video"}},
    "canceled": _UNFINISHED | {"state": "canceled"},
}


_BATCH = {
    "id": "bat_0c1d2e3f405162738495a6b7c8d9e0f1",
    "object": "batch",
    "state": "completed",
    "total": 2,
    "counts": {"queued": 0, "running": 0, "succeeded": 1, "failed": 1, "canceled": 0, "deleted": 0},
    "edit_ids": ["edt_5f0c1e2d3c4b4a59a8e7f6d5c4b3a291", "edt_6a1d2f3e4d5c4b6a9b8f7e6d5c4b3a20"],
    "created_at": "2026-12-07T21:00:00Z",
    "completed_at": "2026-12-07T21:00:09Z",
}


def example(event: str) -> dict[str, Any]:
    """A delivery's body for `event`. The OpenAPI document gets it after FastAPI wrote the rest (which
    would drop its nulls: an example must be a valid instance)."""
    family, what = event.split(".")
    if family == "batch":
        return {"type": event, "timestamp": "2026-12-07T21:00:09Z", "data": _BATCH}
    data = _EXAMPLES[family] | _STATES[what]
    if family == "preview" and what != "succeeded":
        data |= {"sheet_url": None}
    return {"type": event, "timestamp": "2026-12-07T21:00:09Z", "data": data}


def install(app: FastAPI) -> None:
    """One `webhooks:` entry per event type the server sends."""
    receivers: dict[str, Callable[..., None]] = {"edit": edit_event, "preview": preview_event, "batch": batch_event}
    for event in (*ALL_EVENTS, *get_args(BatchEventType)):
        family, what = event.split(".")
        app.webhooks.add_api_route(
            event,
            receivers[family],
            methods=["POST"],
            summary=f"{event}: {_WHEN[what]}",
            description=_HEADERS,
            tags=["webhooks"],
            status_code=204,
            responses={204: {"description": "Received: any 2xx ends the delivery."}},
        )
