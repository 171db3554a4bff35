"""`/v1/edits/{id}/webhook-deliveries` and `/v1/previews/{id}/webhook-deliveries`: what was sent for a job,
every attempt, and replay; each family of jobs under its own path, as its other routes."""

from __future__ import annotations

from typing import cast

from fastapi import APIRouter
from sqlalchemy import select

from cmet_core.errors import ErrorCode
from cmet_jobs import schemas, submissions, webhooks
from cmet_jobs.db.models import WebhookDelivery
from cmet_jobs.errors import RequestError
from cmet_jobs.submissions import EDITS, PREVIEWS, Family
from service.deps import KeyDep, SessionDep, SettingsDep


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


def deliveries_router(family: Family) -> APIRouter:
    """The two routes for the jobs of `family` (`/v1/<family>s/{job_id}/webhook-deliveries`)."""
    router = APIRouter(prefix=f"/v1/{family.noun}s/{{job_id}}/webhook-deliveries", tags=["webhooks"])

    @router.get("", response_model=schemas.WebhookDeliveryList)
    def list_deliveries(job_id: str, key: KeyDep, session: SessionDep) -> schemas.WebhookDeliveryList:
        """Every event recorded for this job, oldest first, with its attempts."""
        submissions.owned(session, key, job_id, family=family)
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
        submissions.owned(session, key, job_id, family=family)
        delivery = session.get(WebhookDelivery, delivery_id)
        if delivery is None or delivery.job_id != job_id:
            message = f"no webhook delivery {delivery_id} for {family.noun} {job_id}"
            raise RequestError(ErrorCode.DELIVERY_NOT_FOUND, message)
        webhooks.replay(delivery)
        session.commit()
        webhooks.dispatch(settings, [delivery.id])
        return _schema(delivery)

    return router


router = deliveries_router(EDITS)
preview_router = deliveries_router(PREVIEWS)
