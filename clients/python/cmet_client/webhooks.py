"""Verify a webhook the way Standard Webhooks defines it (https://www.standardwebhooks.com/).

The server signs `"{webhook-id}.{webhook-timestamp}.{body}"` with HMAC-SHA256 under the key's
`whsec_...` secret and sends `v1,<base64>` in `webhook-signature` (space-separated when it signs with
more than one secret, as during a rotation's grace period). A receiver checks the signature over the
raw body and that the timestamp is close to its own clock, so a captured request cannot be replayed.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import time
from collections.abc import Mapping
from typing import Any

from cmet_client.errors import WebhookVerificationError

TOLERANCE_S = 300
"""How far the sender's clock may be from the receiver's, either way."""


def _key(secret: str) -> bytes:
    try:
        return base64.b64decode(secret.removeprefix("whsec_"), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("a webhook secret is whsec_ followed by base64") from None


def verify(
    headers: Mapping[str, str],
    body: bytes | str,
    secret: str,
    *,
    tolerance_s: float = TOLERANCE_S,
    now: float | None = None,
) -> dict[str, Any]:
    """The delivered event (`{type, timestamp, data}`) if the request is a fresh delivery signed with
    `secret`; else WebhookVerificationError. Pass the body exactly as received, before any JSON parsing."""
    raw = body.encode() if isinstance(body, str) else body
    lower = {name.lower(): value for name, value in headers.items()}
    msg_id, stamp = lower.get("webhook-id", ""), lower.get("webhook-timestamp", "")
    if not msg_id or not stamp.isdigit():
        raise WebhookVerificationError("missing webhook-id or webhook-timestamp header")
    age = (time.time() if now is None else now) - int(stamp)
    if abs(age) > tolerance_s:
        raise WebhookVerificationError(f"webhook-timestamp is {age:.0f} s away from this clock")
    mac = hmac.new(_key(secret), f"{msg_id}.{stamp}.".encode() + raw, hashlib.sha256).digest()
    expected = "v1," + base64.b64encode(mac).decode()
    if not any(hmac.compare_digest(given, expected) for given in lower.get("webhook-signature", "").split()):
        raise WebhookVerificationError("no signature matches the secret")
    event: dict[str, Any] = json.loads(raw)
    return event
