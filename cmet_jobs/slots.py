"""Per-key slots shared by every API process: at most `limit` of one key's submissions (or event streams)
at once, whichever process holds them.

With a Redis broker the slots live in Redis, one sorted set per key whose members are the held slots,
scored by when their lease ends: taking one drops the ended leases, counts, and adds one in a single
script, so two processes cannot both take the last slot. A process renews its slots' leases every third
of `lease_s` from one thread, so a slot held for minutes (a stream) stays held, while the slots of a
process that was killed free themselves within `lease_s`. With the local broker (`cmet serve`, one API
process) they are a counter in the process.
"""

from __future__ import annotations

import threading
import uuid
from collections import Counter
from typing import Protocol

import redis

from cmet_core.errors import ErrorCode
from cmet_jobs.errors import OUTAGE_RETRY_AFTER_S, RequestError
from cmet_jobs.settings import JobsSettings

REDIS_TIMEOUT_S = 2.0

# KEYS[1]: the key's set; ARGV: limit, lease (ms), the new slot. Redis's clock for every process alike.
_TAKE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[1]) then return 0 end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[3])
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[2]))
return 1
"""

# KEYS: the sets of the held slots; ARGV: lease (ms), then the slots, one per key. Only slots still held.
_RENEW = """
local t = redis.call('TIME')
local until_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) + tonumber(ARGV[1])
for i, key in ipairs(KEYS) do
  redis.call('ZADD', key, 'XX', until_ms, ARGV[i + 1])
  redis.call('PEXPIRE', key, tonumber(ARGV[1]))
end
return #KEYS
"""


class Slots(Protocol):
    limit: int

    def take(self, key_id: str) -> str | None:
        """A slot for `key_id` (a token to give back), or None when the key holds `limit` already."""
        ...

    def give(self, token: str) -> None: ...


class LocalSlots:
    """Slots counted in this process alone (one API process: `cmet serve`, tests)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.held = Counter[str]()
        self._owner: dict[str, str] = {}

    def take(self, key_id: str) -> str | None:
        if self.held[key_id] >= self.limit:
            return None
        token = uuid.uuid4().hex
        self.held[key_id] += 1
        self._owner[token] = key_id
        return token

    def give(self, token: str) -> None:
        key_id = self._owner.pop(token, None)
        if key_id is None:
            return
        self.held[key_id] -= 1
        if self.held[key_id] <= 0:
            del self.held[key_id]


class RedisSlots:
    """Slots counted in Redis across processes, each on a lease this process renews while it holds it."""

    def __init__(self, url: str, name: str, limit: int, lease_s: float) -> None:
        self.limit, self.name, self.lease_ms = limit, name, int(lease_s * 1000)
        self.client = redis.Redis.from_url(url, socket_timeout=REDIS_TIMEOUT_S, socket_connect_timeout=REDIS_TIMEOUT_S)
        self._take = self.client.register_script(_TAKE)
        self._renew = self.client.register_script(_RENEW)
        self._held: dict[str, str] = {}  # token -> its set
        self._lock = threading.Lock()
        self._renewer: threading.Thread | None = None

    def _set(self, key_id: str) -> str:
        return f"cmet:slots:{self.name}:{key_id}"

    def take(self, key_id: str) -> str | None:
        token = uuid.uuid4().hex
        try:
            taken = self._take(keys=[self._set(key_id)], args=[self.limit, self.lease_ms, token])
        except redis.RedisError as exc:
            raise RequestError(
                ErrorCode.QUEUE_UNAVAILABLE,
                "the job queue cannot be reached",
                {"Retry-After": str(OUTAGE_RETRY_AFTER_S)},
            ) from exc
        if not taken:
            return None
        with self._lock:
            self._held[token] = self._set(key_id)
            if self._renewer is None:
                self._renewer = threading.Thread(target=self._renew_forever, name=f"slots-{self.name}", daemon=True)
                self._renewer.start()
        return token

    def give(self, token: str) -> None:
        with self._lock:
            key = self._held.pop(token, None)
        if key is not None:
            try:
                self.client.zrem(key, token)
            except redis.RedisError:
                pass  # its lease ends by itself within lease_s

    def renew(self) -> int:
        """Every slot this process holds gets a whole lease again; the number renewed."""
        with self._lock:
            held = list(self._held.items())
        if held:
            self._renew(keys=[key for _, key in held], args=[self.lease_ms, *(token for token, _ in held)])
        return len(held)

    def _renew_forever(self) -> None:
        stop = threading.Event()
        while not stop.wait(self.lease_ms / 3000):
            try:
                self.renew()
            except redis.RedisError:
                continue  # Redis away for a moment: the next round renews, before the leases end


def slots_for(settings: JobsSettings, name: str, limit: int) -> Slots:
    """Redis slots where the broker is Redis (API processes may be many), else this process's own."""
    if settings.broker_url.startswith(("redis://", "rediss://")):
        return RedisSlots(settings.broker_url, name, limit, settings.slot_lease_s)
    return LocalSlots(limit)
