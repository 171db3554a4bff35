"""Webhook events: recorded as deliveries on the job's record, sent signed, retried on a schedule.

Deliveries are rows, not queue messages waiting hours for their turn (a Redis broker would
redeliver a task held past its visibility timeout). Tenants are served fairly: a key has at most
`webhook_key_concurrency` deliveries being sent at once, so its slow receiver holds at most that many
of the webhook workers' threads; its other due deliveries wait as rows, and a message for one of
them returns at once, leaving the thread to other keys. A row due for an attempt is claimed by one
conditional UPDATE, so the sweeper, the first dispatch and a replay can race without sending
twice. Message ids are deterministic per job and event: a job re-run after a crash sends each
event once.
"""

from __future__ import annotations

import json
import logging
import random
import time
from datetime import timedelta
from typing import Any, cast

from pydantic import BaseModel
from sqlalchemy import CursorResult, func, select, update
from sqlalchemy.orm import Session

from cmet_jobs import jobs
from cmet_jobs.db.models import ApiKey, BatchRow, JobRow, WebhookDelivery, now
from cmet_jobs.db.session import session_scope
from cmet_jobs.errors import RequestError
from cmet_jobs.keys import signing_secrets
from cmet_jobs.queue import send
from cmet_jobs.settings import JobsSettings
from cmet_jobs.states import DeliveryState
from cmet_jobs.storage import Storage
from cmet_jobs.webhook_signing import headers as signed_headers
from cmet_jobs.webhook_signing import retry_after_seconds, retry_schedule

log = logging.getLogger(__name__)

DELIVER = "cmet.deliver_webhook"
MAX_RETRY_AFTER_S = 24 * 3600.0
_rng = random.SystemRandom()


def event_name(job: JobRow, what: str) -> str:
    """`edit.<what>` for edits, `preview.<what>` for clip previews and contact sheets."""
    return f"{'preview' if job.kind.preview else 'edit'}.{what}"


def _msg_id(job: JobRow, event: str) -> str:
    suffix = f"_{int(job.progress * 10)}" if event == "edit.progress" else ""
    return f"msg_{job.id.split('_', 1)[1]}_{event.split('.', 1)[1]}{suffix}"


def emit(session: Session, job: JobRow, event: str, storage: Storage) -> str | None:
    """Record `event` for `job` if it subscribed; returns the delivery id to dispatch after commit."""
    wanted = (job.webhook_events or {}).get("events", [])
    if not job.webhook_url or event not in wanted:
        return None
    data = jobs.payload(job, storage)
    return _recorded(session, _msg_id(job, event), event, job.key_id, job.webhook_url, data, job_id=job.id)


def emit_batch(session: Session, batch: BatchRow, event: str, data: BaseModel) -> str | None:
    """Record a batch's `event` (its `data` as the API shows the batch) if the batch subscribed; once per batch."""
    wanted = (batch.webhook_events or {}).get("events", [])
    if not batch.webhook_url or event not in wanted:
        return None
    msg_id = f"msg_{batch.id.split('_', 1)[1]}_{event.split('.', 1)[1]}"
    return _recorded(session, msg_id, event, batch.key_id, batch.webhook_url, data, batch_id=batch.id)


def _recorded(
    session: Session,
    msg_id: str,
    event: str,
    key_id: str,
    url: str,
    data: BaseModel,
    *,
    job_id: str | None = None,
    batch_id: str | None = None,
) -> str | None:
    """A new delivery row (None when this message was recorded before)."""
    if session.scalar(select(WebhookDelivery.id).where(WebhookDelivery.msg_id == msg_id)) is not None:
        return None
    delivery = WebhookDelivery(
        job_id=job_id,
        batch_id=batch_id,
        key_id=key_id,
        event=event,
        msg_id=msg_id,
        url=url,
        payload={"type": event, "timestamp": now().isoformat(), "data": data.model_dump(mode="json")},
    )
    session.add(delivery)
    session.flush()
    return delivery.id


def dispatch(settings: JobsSettings, delivery_ids: list[str | None]) -> None:
    """Queue deliveries on their own queue, never the edit queue: webhook workers send them (several
    at once, each within `webhook_timeout_s`), so a slow receiver holds up no one's edit. A broker
    that is away loses nothing: the rows are due, and the webhook worker's sweeper queues them."""

    for delivery_id in delivery_ids:
        if delivery_id is None:
            continue
        try:
            send(settings, DELIVER, delivery_id, settings.webhook_queue)
        except RequestError as exc:
            log.warning("delivery %s not queued now (the sweeper sends it when due): %s", delivery_id, exc.detail)


def _claim(settings: JobsSettings, delivery_id: str) -> bool | None:
    """True: this attempt is ours to send. False: not due (sent, claimed by another, or gone). None: due,
    but its key already has `webhook_key_concurrency` deliveries being sent; it stays due, and the
    sweeper queues it again once one of them is done."""
    with session_scope(settings.db_url) as session:
        key_id = session.scalar(select(WebhookDelivery.key_id).where(WebhookDelivery.id == delivery_id))
        if key_id is None:
            return False
        session.execute(select(ApiKey.id).where(ApiKey.id == key_id).with_for_update())  # one claim per key at once
        sending = session.scalar(
            select(func.count())
            .select_from(WebhookDelivery)
            .where(WebhookDelivery.key_id == key_id, WebhookDelivery.state == DeliveryState.SENDING)
        )
        if (sending or 0) >= settings.webhook_key_concurrency:
            return None
        claimed = session.execute(
            update(WebhookDelivery)
            .where(
                WebhookDelivery.id == delivery_id,
                WebhookDelivery.state == DeliveryState.PENDING,
                WebhookDelivery.next_attempt_at <= now(),
            )
            .values(state=DeliveryState.SENDING, next_attempt_at=None)
        )
        return bool(cast("CursorResult[Any]", claimed).rowcount == 1)  # an UPDATE's result is a cursor result


def deliver(settings: JobsSettings, delivery_id: str) -> str:
    """One attempt, if the delivery is due; records it and schedules the next or ends the delivery."""
    from cmet_jobs.net_guard import BlockedURLError, post_json  # deferred: httpx

    claimed = _claim(settings, delivery_id)
    if claimed is None:
        return "key busy"
    if not claimed:
        return "not due"
    with session_scope(settings.db_url) as session:
        delivery = session.get(WebhookDelivery, delivery_id)
        key = session.get(ApiKey, delivery.key_id) if delivery else None
        if delivery is None or key is None:
            return "gone"
        url, msg_id, body = delivery.url, delivery.msg_id, json.dumps(delivery.payload, separators=(",", ":")).encode()
        secret, *also = signing_secrets(key)
    started, status, error, retry_after = time.monotonic(), None, None, None
    try:
        result = post_json(
            url,
            body,
            signed_headers(secret, msg_id, int(time.time()), body, also),
            allow_private=settings.allow_private_urls,
            schemes=settings.url_schemes,
            timeout=settings.webhook_timeout_s,
            total_timeout=settings.webhook_timeout_s,
        )
        status = result.status_code
        retry_after = retry_after_seconds(result.headers.get("retry-after"))
    except BlockedURLError as exc:
        error = f"{exc.code}: {exc}"
    attempt: dict[str, Any] = {
        "at": now().isoformat(),
        "status": status,
        "error": error,
        "duration_ms": round(1000 * (time.monotonic() - started)),
    }
    with session_scope(settings.db_url) as session:
        delivery = session.get(WebhookDelivery, delivery_id)
        if delivery is None:
            return "gone"
        items = [*delivery.attempts.get("items", []), attempt]
        delivery.attempts = {"items": items}
        if status is not None and 200 <= status < 300:
            delivery.state = DeliveryState.SUCCEEDED
        elif status == 410 and delivery.job_id is not None:
            _disable(session, delivery.job_id)
        elif status == 410:  # a batch's one event: nothing more will come
            delivery.state, delivery.next_attempt_at = DeliveryState.DISABLED, None
        else:
            wait = retry_schedule(len(items), _rng)
            if wait is None:
                delivery.state = DeliveryState.FAILED
            else:
                wait = max(wait, min(retry_after or 0.0, MAX_RETRY_AFTER_S))
                delivery.state, delivery.next_attempt_at = DeliveryState.PENDING, now() + timedelta(seconds=wait)
        return str(delivery.state)


def _disable(session: Session, job_id: str) -> None:
    """410 Gone: the subscriber wants no more calls for this job."""
    job = session.get(JobRow, job_id)
    if job is not None:
        job.webhook_events = {"events": [], "disabled": "410 Gone"}
    session.execute(
        update(WebhookDelivery)
        .where(
            WebhookDelivery.job_id == job_id, WebhookDelivery.state.in_((DeliveryState.PENDING, DeliveryState.SENDING))
        )
        .values(state=DeliveryState.DISABLED, next_attempt_at=None)
    )


STALE_SENDING_S = 120


def due(settings: JobsSettings, limit: int = 100) -> list[str]:
    """Deliveries whose next attempt is due, oldest first, but none of a key that has its maximum being
    sent (they wait for one of those to end); one left `sending` by a killed worker counts as due again."""
    with session_scope(settings.db_url) as session:
        session.execute(
            update(WebhookDelivery)
            .where(
                WebhookDelivery.state == DeliveryState.SENDING,
                WebhookDelivery.updated_at < now() - timedelta(seconds=STALE_SENDING_S),
            )
            .values(state=DeliveryState.PENDING, next_attempt_at=now())
        )
        busy = (
            select(WebhookDelivery.key_id)
            .where(WebhookDelivery.state == DeliveryState.SENDING)
            .group_by(WebhookDelivery.key_id)
            .having(func.count() >= settings.webhook_key_concurrency)
        )
        rows = session.scalars(
            select(WebhookDelivery.id)
            .where(
                WebhookDelivery.state == DeliveryState.PENDING,
                WebhookDelivery.next_attempt_at <= now(),
                WebhookDelivery.key_id.not_in(busy),
            )
            .order_by(WebhookDelivery.next_attempt_at)
            .limit(limit)
        )
        return list(rows)


def replay(delivery: WebhookDelivery) -> None:
    """Send again now (same message id, so the receiver can tell it is the same event)."""
    delivery.state, delivery.next_attempt_at = DeliveryState.PENDING, now()
