"""Standard Webhooks signing, verification, the retry schedule and Retry-After parsing."""

from __future__ import annotations

import base64
import hashlib
import hmac
import random
from datetime import UTC, datetime
from email.utils import format_datetime

import pytest

from cmet_jobs.webhook_signing import (
    MAX_ATTEMPTS,
    RETRY_DELAYS_S,
    WebhookVerificationError,
    decode_secret,
    headers,
    new_secret,
    retry_after_seconds,
    retry_schedule,
    sign,
    verify,
)

# The reference vector of the spec's own libraries (standard-webhooks, libraries/python/tests/test_webhooks.py).
REF_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
REF_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
REF_TS = 1614265330
REF_BODY = b'{"test": 2432232314}'
REF_SIGNATURE = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="

SECRET = new_secret()
NOW = 1_700_000_000
BODY = b'{"type":"edit.succeeded","data":{"id":"ed_1"}}'


def test_reference_vector() -> None:
    assert sign(REF_SECRET, REF_ID, REF_TS, REF_BODY) == REF_SIGNATURE
    verify(
        REF_SECRET,
        {"webhook-id": REF_ID, "webhook-timestamp": str(REF_TS), "webhook-signature": REF_SIGNATURE},
        REF_BODY,
        now=REF_TS,
    )


def test_hand_computed_vector() -> None:
    key = bytes(range(32))
    secret = "whsec_" + base64.b64encode(key).decode()
    mac = hmac.new(key, b"msg_hand.1700000000." + BODY, hashlib.sha256).digest()
    assert sign(secret, "msg_hand", NOW, BODY) == "v1," + base64.b64encode(mac).decode()


def test_round_trip_and_headers() -> None:
    sent = headers(SECRET, "msg_1", NOW, BODY)
    assert set(sent) == {"webhook-id", "webhook-timestamp", "webhook-signature"}
    assert sent["webhook-id"] == "msg_1" and sent["webhook-timestamp"] == str(NOW)
    verify(SECRET, sent, BODY, now=NOW)
    verify(SECRET, {k.title(): v for k, v in sent.items()}, BODY, now=NOW)  # header names are case-insensitive
    verify(SECRET.removeprefix("whsec_"), sent, BODY, now=NOW)  # like the reference libraries, the prefix is optional


@pytest.mark.parametrize("change", ["body", "id", "timestamp", "secret", "signature"])
def test_tampering_fails(change: str) -> None:
    sent, body, secret = headers(SECRET, "msg_1", NOW, BODY), BODY, SECRET
    if change == "body":
        body = BODY.replace(b"succeeded", b"failed")
    elif change == "id":
        sent["webhook-id"] = "msg_2"
    elif change == "timestamp":
        sent["webhook-timestamp"] = str(NOW + 1)
    elif change == "secret":
        secret = new_secret()
    else:
        raw = bytearray(base64.b64decode(sent["webhook-signature"][3:]))
        raw[0] ^= 1
        sent["webhook-signature"] = "v1," + base64.b64encode(bytes(raw)).decode()
    with pytest.raises(WebhookVerificationError, match="no matching signature"):
        verify(secret, sent, body, now=NOW)


def test_multiple_signatures() -> None:
    good = sign(SECRET, "msg_1", NOW, BODY)
    other = sign(new_secret(), "msg_1", NOW, BODY)
    base = {"webhook-id": "msg_1", "webhook-timestamp": str(NOW)}
    # A rotated secret's signature, another scheme's, garbage: the good one anywhere in the list passes.
    verify(SECRET, {**base, "webhook-signature": f"{other} v1a,{good[3:]} v1,@@@ {good}"}, BODY, now=NOW)
    verify(SECRET, {**base, "webhook-signature": f"{good} {other}"}, BODY, now=NOW)
    with pytest.raises(WebhookVerificationError):
        verify(SECRET, {**base, "webhook-signature": f"{other} v2,{good[3:]}"}, BODY, now=NOW)


@pytest.mark.parametrize(
    "drop,value,message",
    [
        ("webhook-id", None, "webhook-id"),
        ("webhook-timestamp", None, "webhook-timestamp"),
        ("webhook-signature", None, "webhook-signature"),
        ("webhook-timestamp", "soon", "webhook-timestamp"),
        ("webhook-timestamp", "-5", "webhook-timestamp"),
        ("webhook-timestamp", "1e9", "webhook-timestamp"),
        ("webhook-signature", "", "webhook-signature"),
    ],
)
def test_missing_or_bad_headers(drop: str, value: str | None, message: str) -> None:
    sent = headers(SECRET, "msg_1", NOW, BODY)
    if value is None:
        del sent[drop]
    else:
        sent[drop] = value
    with pytest.raises(WebhookVerificationError, match=message):
        verify(SECRET, sent, BODY, now=NOW)


def test_tolerance_both_ways() -> None:
    sent = headers(SECRET, "msg_1", NOW, BODY)
    verify(SECRET, sent, BODY, now=NOW + 300)
    verify(SECRET, sent, BODY, now=NOW - 300)
    with pytest.raises(WebhookVerificationError, match="too old"):
        verify(SECRET, sent, BODY, now=NOW + 301)
    with pytest.raises(WebhookVerificationError, match="future"):
        verify(SECRET, sent, BODY, now=NOW - 301)
    verify(SECRET, sent, BODY, now=NOW + 3000, tolerance_s=3600)


def test_secret_format() -> None:
    secret = new_secret()
    assert secret.startswith("whsec_") and len(decode_secret(secret)) == 32
    assert len(decode_secret(new_secret(24))) == 24 and len(decode_secret(new_secret(64))) == 64
    assert new_secret() != new_secret()
    for bad in [
        "whsec_not base64!",
        "whsec_" + base64.b64encode(b"x" * 23).decode(),
        "whsec_" + base64.b64encode(b"x" * 65).decode(),
        "whsec_",
    ]:
        with pytest.raises(ValueError, match="webhook secret"):
            decode_secret(bad)
    with pytest.raises(ValueError):
        new_secret(16)
    with pytest.raises(ValueError):
        sign(SECRET, "", NOW, BODY)
    with pytest.raises(ValueError):  # a bad secret is a configuration error, not a bad request
        verify("whsec_short", headers(SECRET, "msg_1", NOW, BODY), BODY, now=NOW)


def test_retry_schedule_bounds_and_jitter() -> None:
    expected = [5, 300, 1800, 7200, 18000, 36000, 36000]
    assert list(RETRY_DELAYS_S) == expected and MAX_ATTEMPTS == 8
    rng = random.Random(7)
    for attempt, base in enumerate(expected, start=1):
        delays = [d for _ in range(200) if (d := retry_schedule(attempt, rng)) is not None]
        assert len(delays) == 200 and all(0.8 * base <= d <= 1.2 * base for d in delays)
        assert len(set(delays)) > 150  # jittered, not constant
        assert min(delays) < 0.9 * base and max(delays) > 1.1 * base  # spread over most of the +-20%
    assert retry_schedule(8, rng) is None and retry_schedule(100, rng) is None
    with pytest.raises(ValueError):
        retry_schedule(0, rng)


class _Edge:
    def __init__(self, value: float) -> None:
        self.value = value

    def uniform(self, a: float, b: float) -> float:
        return a if self.value < 0 else b


def test_retry_schedule_jitter_extremes() -> None:
    assert retry_schedule(2, _Edge(-1)) == pytest.approx(240.0)
    assert retry_schedule(2, _Edge(1)) == pytest.approx(360.0)


def test_retry_after() -> None:
    now = datetime(2026, 5, 1, 12, 0, 0, tzinfo=UTC).timestamp()
    assert retry_after_seconds("120", now) == 120.0
    assert retry_after_seconds(" 0 ", now) == 0.0
    assert retry_after_seconds("9" * 5000, now) == 2.0**31  # RFC 9111: too large counts as 2^31
    assert retry_after_seconds("Fri, 01 May 2026 12:01:30 GMT", now) == 90.0  # IMF-fixdate
    assert retry_after_seconds(format_datetime(datetime(2026, 5, 1, 12, 5, tzinfo=UTC), usegmt=True), now) == 300.0
    assert retry_after_seconds("Friday, 01-May-26 12:00:10 GMT", now) == 10.0  # obsolete RFC 850 form
    assert retry_after_seconds("Fri May  1 12:00:20 2026", now) == 20.0  # obsolete asctime form
    assert retry_after_seconds("Fri, 01 May 2026 11:00:00 GMT", now) == 0.0  # in the past: now
    for bad in [None, "", "-5", "1.5", "soon", "Fri, 99 May 2026 12:00:00 GMT"]:
        assert retry_after_seconds(bad, now) is None, bad


def test_a_rotated_secret_signs_beside_the_new_one_only_in_its_grace_period() -> None:
    from datetime import timedelta

    from cmet_jobs.db.models import ApiKey, now
    from cmet_jobs.keys import signing_secrets

    old, new = new_secret(), new_secret()
    key = ApiKey(webhook_secret=new, previous_webhook_secret=old, previous_secret_until=now() + timedelta(hours=1))
    assert signing_secrets(key) == [new, old]
    signed = headers(new, "msg_1", 1_700_000_000, b"{}", also=[old])
    for secret in (old, new):
        verify(secret, signed, b"{}", now=1_700_000_000)
    key.previous_secret_until = now() - timedelta(seconds=1)
    assert signing_secrets(key) == [new]
