"""`/v1/edits/{id}/webhook-deliveries`: what was sent for an edit, every attempt, and replay."""

from __future__ import annotations

from typing import cast

from fastapi import APIRouter
from sqlalchemy import select

from cmet_core.errors import ErrorCode
from cmet_jobs import schemas, submissions, webhooks
from cmet_jobs.db.models import WebhookDelivery
from cmet_jobs.errors import RequestError
from service.deps import KeyDep, SessionDep, SettingsDep

router = APIRouter(prefix="/v1/edits/{job_id}/webhook-deliveries", tags=["webhooks"])


def _schema(d: WebhookDelivery) -> schemas.WebhookDelivery:
    return schemas.WebhookDelivery(
        id=d.id,
        event=cast(schemas.WebhookEvent, d.event),  # recorded from that Literal by webhooks.emit
        msg_id=d.msg_id,
        state=d.state,
        url=d.url,
        attempts=[schemas.DeliveryAttempt(**a) for a in d.attempts.get("items", [])],
        next_attempt_at=d.next_attempt_at,
        created_at=d.created_at,
    )


@router.get("", response_model=schemas.WebhookDeliveryList)
def list_deliveries(job_id: str, key: KeyDep, session: SessionDep) -> schemas.WebhookDeliveryList:
    """Every event recorded for this edit, oldest first, with its attempts."""
    submissions.owned(session, key, job_id)
    rows = session.scalars(
        select(WebhookDelivery)
        .where(WebhookDelivery.job_id == job_id)
        .order_by(WebhookDelivery.created_at, WebhookDelivery.id)
    )
    return schemas.WebhookDeliveryList(data=[_schema(d) for d in rows])


@router.post("/{delivery_id}/replay", status_code=202, response_model=schemas.WebhookDelivery)
def replay_delivery(
    job_id: str, delivery_id: str, key: KeyDep, session: SessionDep, settings: SettingsDep
) -> schemas.WebhookDelivery:
    """Send the event again now, whatever its state (the same `webhook-id`)."""
    submissions.owned(session, key, job_id)
    delivery = session.get(WebhookDelivery, delivery_id)
    if delivery is None or delivery.job_id != job_id:
        raise RequestError(ErrorCode.DELIVERY_NOT_FOUND, f"no webhook delivery {delivery_id} for edit {job_id}")
    webhooks.replay(delivery)
    session.commit()
    webhooks.dispatch(settings, [delivery.id])
    return _schema(delivery)
