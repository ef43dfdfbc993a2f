"""`RedisIncidentStore` and `RedisContextLeases`: incidents and the watchers' context leases in Redis.

Keys, under the operation store's tagged prefix (one hash tag, so every script runs on Redis Cluster too):

    incident:{id}                  the incident, as pydantic JSON
    incident-by-key:{key}          → id of the incident that holds an incident key (workload + failed revision)
    incident-by-workload:{wkey}    → id of the workload's latest incident (superseded by a newer revision…)
    incidents-live                 set of ids: open, or resolved with a card edit still pending
    verifications                  hash operation id → PendingVerification JSON (rollbacks still being verified)
    ctx-lease:{name}               hash {holder, token} with a TTL: who watches a context now
    ctx-lease-token:{name}         counter the tokens come from; never expires, so a token never goes down

Every write is one Lua script: the fencing check (the writer's token against the lease's current one), the
compare-and-set on `version`, the indexes and the expiry move together. Resolved incidents expire after the
retention (like finished operations), with the index keys that still point at them; open ones never expire.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import timedelta
from typing import Any, Final

import redis

from bot.adapters.redis_connect import RedisClient
from bot.adapters.redis_store import DEFAULT_KEY_PREFIX, DEFAULT_RETENTION, tagged_prefix
from bot.core.errors import ConcurrentUpdate, FencedOut, StoreUnavailable
from bot.core.incidents import Incident, IncidentId, IncidentState
from bot.ports import ContextFence, PendingVerification

# Checks the writer's fencing token against the lease's current one (KEYS[5]); '' means "not fenced".
_FENCE_CHECK: Final = """
if ARGV[7] ~= '' and redis.call('HGET', KEYS[5], 'token') ~= ARGV[7] then return {'fenced'} end
"""
# After the record is written: the live set, and the retention of a resolved incident and its index keys.
_INDEXES: Final = """
if ARGV[5] == '1' then redis.call('SADD', KEYS[4], ARGV[3]) else redis.call('SREM', KEYS[4], ARGV[3]) end
if ARGV[4] == '1' then
  redis.call('PEXPIRE', KEYS[1], ARGV[6])
  for i = 2, 3 do
    if redis.call('GET', KEYS[i]) == ARGV[3] then redis.call('PEXPIRE', KEYS[i], ARGV[6]) end
  end
else
  redis.call('PERSIST', KEYS[1])
  for i = 2, 3 do
    if redis.call('GET', KEYS[i]) == ARGV[3] then redis.call('PERSIST', KEYS[i]) end
  end
end
return {'ok'}
"""

# KEYS: incident, by-key, by-workload, live, lease.
# ARGV: 1 record, 2 incident-key prefix (to read the holder's record), 3 id, 4 resolved (1/0), 5 live (1/0),
#       6 retention ms, 7 fence token ('' when none)
CREATE_INCIDENT: Final = (
    _FENCE_CHECK
    + """
if redis.call('EXISTS', KEYS[1]) == 1 then return {'exists', ARGV[3]} end
local holder = redis.call('GET', KEYS[2])
if holder then
  local record = redis.call('GET', ARGV[2] .. holder)
  if record and cjson.decode(record)['state'] ~= 'resolved' then return {'exists', holder} end
end
redis.call('SET', KEYS[1], ARGV[1])
redis.call('SET', KEYS[2], ARGV[3])
redis.call('SET', KEYS[3], ARGV[3])
"""
    + _INDEXES
)

# KEYS: incident, by-key, by-workload, live, lease.
# ARGV: 1 record, 2 expected version, 3 id, 4 resolved (1/0), 5 live (1/0), 6 retention ms, 7 fence token
REPLACE_INCIDENT: Final = (
    _FENCE_CHECK
    + """
local current = redis.call('GET', KEYS[1])
if not current then return {'missing'} end
local stored = cjson.decode(current)['version']
if stored ~= tonumber(ARGV[2]) then return {'conflict', tostring(stored)} end
redis.call('SET', KEYS[1], ARGV[1])
if not redis.call('GET', KEYS[2]) then redis.call('SET', KEYS[2], ARGV[3]) end
"""
    + _INDEXES
)

# KEYS: lease, token counter.  ARGV: holder, ttl ms.
ACQUIRE_LEASE: Final = """
local holder = redis.call('HGET', KEYS[1], 'holder')
if holder and holder ~= ARGV[1] then return {'held', holder} end
if holder == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return {'ok', redis.call('HGET', KEYS[1], 'token')}
end
local token = redis.call('INCR', KEYS[2])
redis.call('HSET', KEYS[1], 'holder', ARGV[1], 'token', token)
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return {'ok', tostring(token)}
"""

# KEYS: lease.  ARGV: holder, token, ttl ms ('' = release).
RENEW_LEASE: Final = """
if redis.call('HGET', KEYS[1], 'holder') ~= ARGV[1] or redis.call('HGET', KEYS[1], 'token') ~= ARGV[2] then
  return 0
end
if ARGV[3] == '' then redis.call('DEL', KEYS[1]) else redis.call('PEXPIRE', KEYS[1], ARGV[3]) end
return 1
"""


class RedisIncidentStore:
    """The `IncidentStore` port on Redis ≥ 7 (one server, Sentinel or Cluster). Thread-safe, as redis-py is."""

    def __init__(
        self,
        redis_client: RedisClient,
        *,
        key_prefix: str = DEFAULT_KEY_PREFIX,
        retention: timedelta = DEFAULT_RETENTION,
    ) -> None:
        self._redis = redis_client
        self._prefix = tagged_prefix(key_prefix)
        self._retention = retention
        self._create = redis_client.register_script(CREATE_INCIDENT)
        self._replace = redis_client.register_script(REPLACE_INCIDENT)

    def create(self, incident: Incident, *, fence: ContextFence | None = None) -> None:
        reply = self._run(self._create, incident, [incident.model_dump_json(), self._key("incident", "")], fence)
        outcome, *rest = reply
        if outcome == "fenced":
            raise FencedOut(f"incident {incident.id}: the watch lease {fence and fence.lease} has a newer holder")
        if outcome == "exists":
            raise ConcurrentUpdate(f"incident key {incident.key} is held by {rest[0]}")

    def get(self, incident_id: IncidentId) -> Incident | None:
        with _translating_errors():
            record = self._redis.get(self._key("incident", incident_id))
        return None if record is None else Incident.model_validate_json(record)

    def find_by_key(self, key: str) -> Incident | None:
        return self._follow(self._key("incident-by-key", key))

    def find_by_workload(self, workload_key: str) -> Incident | None:
        return self._follow(self._key("incident-by-workload", workload_key))

    def replace(self, incident: Incident, expected_version: int, *, fence: ContextFence | None = None) -> None:
        if incident.version != expected_version + 1:
            raise ValueError(f"incident {incident.id} must carry version {expected_version + 1}")
        reply = self._run(self._replace, incident, [incident.model_dump_json(), str(expected_version)], fence)
        outcome, *rest = reply
        if outcome == "fenced":
            raise FencedOut(f"incident {incident.id}: the watch lease {fence and fence.lease} has a newer holder")
        if outcome == "missing":
            raise ConcurrentUpdate(f"incident {incident.id} does not exist")
        if outcome == "conflict":
            raise ConcurrentUpdate(f"incident {incident.id} is at version {rest[0]}, not {expected_version}")

    def live(self) -> Sequence[Incident]:
        with _translating_errors():
            ids = sorted(_text(i) for i in self._redis.smembers(self._key("incidents-live")))
            records = self._redis.mget([self._key("incident", i) for i in ids]) if ids else []
        return [Incident.model_validate_json(record) for record in records if record is not None]

    def holds(self, fence: ContextFence) -> bool:
        with _translating_errors():
            token = self._redis.hget(self._key("ctx-lease", fence.lease), "token")
        return token is not None and _text(token) == str(fence.token)

    def add_verification(self, pending: PendingVerification) -> None:
        with _translating_errors():
            self._redis.hset(self._key("verifications"), pending.operation_id, pending.model_dump_json())

    def pending_verifications(self) -> Sequence[PendingVerification]:
        with _translating_errors():
            records = self._redis.hvals(self._key("verifications"))
        return [PendingVerification.model_validate_json(record) for record in records]

    def finish_verification(self, pending: PendingVerification) -> None:
        with _translating_errors():
            self._redis.hdel(self._key("verifications"), pending.operation_id)

    def _follow(self, index_key: str) -> Incident | None:
        with _translating_errors():
            incident_id = self._redis.get(index_key)
        return None if incident_id is None else self.get(IncidentId(_text(incident_id)))

    def _run(self, script: Any, incident: Incident, head: list[str], fence: ContextFence | None) -> list[str]:
        keys = [
            self._key("incident", incident.id),
            self._key("incident-by-key", incident.key),
            self._key("incident-by-workload", incident.workload.key),
            self._key("incidents-live"),
            self._key("ctx-lease", fence.lease if fence else "-"),
        ]
        is_resolved = incident.state is IncidentState.RESOLVED
        args = [
            *head,
            incident.id,
            "1" if is_resolved else "0",
            "0" if is_resolved and not incident.is_card_stale else "1",
            str(_milliseconds(self._retention)),
            "" if fence is None else str(fence.token),
        ]
        with _translating_errors():
            return [_text(part) for part in script(keys=keys, args=args)]

    def _key(self, *parts: str) -> str:
        return self._prefix + ":".join(parts)


class RedisContextLeases:
    """The `ContextLeases` port on Redis: the TTL runs on the server's clock, shared by every replica."""

    def __init__(self, redis_client: RedisClient, *, key_prefix: str = DEFAULT_KEY_PREFIX) -> None:
        self._redis = redis_client
        self._prefix = tagged_prefix(key_prefix)
        self._acquire = redis_client.register_script(ACQUIRE_LEASE)
        self._renew = redis_client.register_script(RENEW_LEASE)

    def acquire(self, lease: str, holder: str, ttl: timedelta) -> ContextFence | None:
        keys = [self._prefix + f"ctx-lease:{lease}", self._prefix + f"ctx-lease-token:{lease}"]
        with _translating_errors():
            outcome, value = (_text(part) for part in self._acquire(keys=keys, args=[holder, _milliseconds(ttl)]))
        return ContextFence(lease=lease, token=int(value)) if outcome == "ok" else None

    def renew(self, fence: ContextFence, holder: str, ttl: timedelta) -> bool:
        return self._run_renew(fence, holder, str(_milliseconds(ttl)))

    def release(self, fence: ContextFence, holder: str) -> None:
        self._run_renew(fence, holder, "")

    def _run_renew(self, fence: ContextFence, holder: str, ttl: str) -> bool:
        keys = [self._prefix + f"ctx-lease:{fence.lease}"]
        with _translating_errors():
            return bool(self._renew(keys=keys, args=[holder, str(fence.token), ttl]))


@contextmanager
def _translating_errors() -> Iterator[None]:
    try:
        yield
    except (redis.RedisError, OSError) as exc:
        raise StoreUnavailable(f"incident store: {type(exc).__name__}: {exc}") from exc


def _milliseconds(duration: timedelta) -> int:
    return max(1, int(duration.total_seconds() * 1000))


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
