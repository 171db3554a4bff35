"""`/v1/keys/self`: what a key may change about itself (HTTP only; `cmet_jobs.keys` decides)."""

from __future__ import annotations

from fastapi import APIRouter

from cmet_jobs import keys, schemas
from service.deps import KeyDep, SessionDep, SettingsDep

router = APIRouter(prefix="/v1/keys", tags=["keys"])


@router.post("/self/webhook-secret", response_model=schemas.WebhookSecret)
def rotate_webhook_secret(key: KeyDep, session: SessionDep, settings: SettingsDep) -> schemas.WebhookSecret:
    """A new webhook secret for this key, shown once. For `CMET_WEBHOOK_SECRET_GRACE_S` (default 24 h) every
    delivery is signed with both the new and the old secret (two `v1,` entries in `webhook-signature`), so a
    receiver can switch secrets at its own pace; then only the new one signs. Rotating again within the grace
    period drops the oldest secret at once."""
    rotated = keys.rotate_webhook_secret(session, key, settings.webhook_secret_grace_s)
    until = rotated.previous_secret_until
    assert until is not None  # just set
    answer = schemas.WebhookSecret(
        webhook_secret=rotated.webhook_secret, previous_valid_until=until, grace_s=settings.webhook_secret_grace_s
    )
    session.commit()
    return answer
