"""Webhook signatures per the Standard Webhooks spec (https://www.standardwebhooks.com/), and the
retry policy of their delivery.

Why this spec: receivers verify us with its reference libraries (or Svix's) instead of our own code,
and signing `msg_id.timestamp.body` binds a body to one delivery id and one moment, so a captured
request cannot be replayed later, or under another id, without the receiver noticing.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import secrets
import time
from collections.abc import Mapping, Sequence
from datetime import UTC
from email.utils import parsedate_to_datetime
from typing import Final, Protocol

SECRET_PREFIX: Final = "whsec_"
SECRET_MIN_BYTES: Final = 24
SECRET_MAX_BYTES: Final = 64
SIGNATURE_VERSION: Final = "v1"
DEFAULT_TOLERANCE_S: Final = 300

# Delay before the next attempt, after attempt 1, 2, ... failed: 8 attempts over about 28 hours,
# so a receiver that is down for a day still gets the event.
RETRY_DELAYS_S: Final[tuple[float, ...]] = (5.0, 300.0, 1800.0, 7200.0, 18000.0, 36000.0, 36000.0)
RETRY_JITTER: Final = 0.2  # +-20%, so deliveries failed together do not retry together
MAX_ATTEMPTS: Final = len(RETRY_DELAYS_S) + 1

# RFC 9111 section 1.2.2: a delta-seconds too large to represent counts as 2^31.
_MAX_DELTA_SECONDS: Final = 2**31
_DIGITS = re.compile(r"[0-9]+")


class WebhookVerificationError(Exception):
    """The request is not a valid, fresh, signed delivery (a bad secret is a ValueError instead)."""


class UniformRandom(Protocol):
    def uniform(self, a: float, b: float) -> float: ...


def new_secret(nbytes: int = 32) -> str:
    """A fresh `whsec_<base64>` secret of `nbytes` random bytes."""
    if not SECRET_MIN_BYTES <= nbytes <= SECRET_MAX_BYTES:
        raise ValueError(f"a secret has {SECRET_MIN_BYTES} to {SECRET_MAX_BYTES} bytes, not {nbytes}")
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(nbytes)).decode("ascii")


def decode_secret(secret: str) -> bytes:
    """The key bytes of a secret, with or without its `whsec_` prefix (as the reference libraries accept)."""
    text = secret.removeprefix(SECRET_PREFIX)
    try:
        key = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("a webhook secret is whsec_ followed by base64") from None
    if not SECRET_MIN_BYTES <= len(key) <= SECRET_MAX_BYTES:
        raise ValueError(f"a webhook secret has {SECRET_MIN_BYTES} to {SECRET_MAX_BYTES} bytes, not {len(key)}")
    return key


def _digest(key: bytes, msg_id: str, timestamp: int, body: bytes) -> bytes:
    return hmac.new(key, f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """`v1,<base64 HMAC-SHA256 of "{msg_id}.{timestamp}.{body}">`, the `webhook-signature` value."""
    if not msg_id or any(c.isspace() for c in msg_id):
        raise ValueError("a webhook id is non-empty and has no whitespace")
    if timestamp < 0:
        raise ValueError("a webhook timestamp is seconds since the epoch")
    return f"{SIGNATURE_VERSION}," + base64.b64encode(_digest(decode_secret(secret), msg_id, timestamp, body)).decode(
        "ascii"
    )


def headers(secret: str, msg_id: str, timestamp: int, body: bytes, also: Sequence[str] = ()) -> dict[str, str]:
    """The three headers a delivery carries; signed with `also` too (space-separated, as the spec allows)
    while a rotated secret's grace period lasts, so a receiver with either secret accepts it."""
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": " ".join(sign(s, msg_id, timestamp, body) for s in (secret, *also)),
    }


def verify(
    secret: str,
    headers: Mapping[str, str],
    body: bytes,
    *,
    tolerance_s: float = DEFAULT_TOLERANCE_S,
    now: float | None = None,
) -> None:
    """Raise WebhookVerificationError unless a `v1` signature in the headers matches and the
    timestamp is within `tolerance_s` of `now` (either way: a future stamp is as suspect as an old one)."""
    key = decode_secret(secret)
    found = {name.lower(): value for name, value in headers.items()}
    msg_id = found.get("webhook-id", "")
    stamp = found.get("webhook-timestamp", "")
    signatures = found.get("webhook-signature", "")
    if not msg_id:
        raise WebhookVerificationError("missing webhook-id header")
    if not _DIGITS.fullmatch(stamp) or len(stamp) > 12:
        raise WebhookVerificationError("missing or invalid webhook-timestamp header")
    if not signatures:
        raise WebhookVerificationError("missing webhook-signature header")
    timestamp = int(stamp)
    moment = time.time() if now is None else now
    if timestamp < moment - tolerance_s:
        raise WebhookVerificationError("webhook-timestamp is too old")
    if timestamp > moment + tolerance_s:
        raise WebhookVerificationError("webhook-timestamp is too far in the future")
    expected = _digest(key, msg_id, timestamp, body)
    for entry in signatures.split():
        version, _, value = entry.partition(",")
        if version != SIGNATURE_VERSION:
            continue  # other schemes (v1a asymmetric, future ones) are skipped, not failed
        try:
            candidate = base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            continue
        if hmac.compare_digest(candidate, expected):
            return
    raise WebhookVerificationError("no matching signature")


def retry_schedule(attempt: int, rng: UniformRandom) -> float | None:
    """Seconds to wait after failed attempt number `attempt` (1 = the first try), or None: give up."""
    if attempt < 1:
        raise ValueError("attempts are numbered from 1")
    if attempt > len(RETRY_DELAYS_S):
        return None
    return RETRY_DELAYS_S[attempt - 1] * (1.0 + rng.uniform(-RETRY_JITTER, RETRY_JITTER))


def retry_after_seconds(header_value: str | None, now: float | None = None) -> float | None:
    """Seconds a `Retry-After` value asks for (delta-seconds or an HTTP-date; a past date gives 0),
    or None when absent or unparseable. The caller caps it against its own schedule."""
    if header_value is None:
        return None
    value = header_value.strip()
    if _DIGITS.fullmatch(value):
        # Length first: int() of thousands of digits raises in Python 3.11.
        return float(_MAX_DELTA_SECONDS if len(value) > 10 else min(int(value), _MAX_DELTA_SECONDS))
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:  # asctime form and "-0000" carry no zone; HTTP dates are UTC
        when = when.replace(tzinfo=UTC)
    moment = time.time() if now is None else now
    return max(0.0, when.timestamp() - moment)
