"""`RedisOperationStore`: the journal of operations in Redis, shared by every bot replica.

Keys (all under `key_prefix`, default ``rollbot:``):

    op:{id}                    the operation, as pydantic JSON
    op-by-msg:{channel}:{ts}   → operation id, for reactions on the request message
    lock:{target.lock_key}     JSON LockInfo {operation_id, requester, since}, with a TTL the caller refreshes
    in-flight                  sorted set of in-flight operation ids, scored by created_at
    audit                      append-only stream of every write (operation id, phase, version, actor, note, at)
    audit:{id}                 the same entries, for one operation
    seen:{key}                 first-delivery markers (Slack event_id, command idempotency), with a TTL

Every write is one Lua script, so it is atomic in one round trip: the compare-and-set on `version`, the
lock, the in-flight index and the audit entry move together or not at all. Each write also carries a random
`write` id that is recorded in its audit entry; when a reply is lost and redis-py resends the same script,
the second run finds its own write id and reports success instead of a false conflict or duplicate.
Compare-and-set conflicts are not retried here: the flow re-reads and decides again.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import redis
from redis.backoff import ExponentialBackoff, NoBackoff
from redis.retry import Retry

from bot.core.catalog import SlackUserId, TargetName
from bot.core.errors import ConcurrentUpdate, DuplicateOperation, StoreUnavailable, TargetBusy
from bot.core.operations import MessageRef, Operation, OperationId, Phase
from bot.ports import AuditEntry, Clock, LockInfo

# Phases whose operation holds its target's lock (mirrors Phase.is_in_flight, passed to the scripts).
_IN_FLIGHT_PHASES: Final = tuple(phase.value for phase in Phase if phase.is_in_flight)

# Shared by the write scripts: was the write with this id already applied (a resent script after a lost reply)?
_LUA_HAS_WRITE = """
local function has_write(stream, write_id)
  for _, entry in ipairs(redis.call('XRANGE', stream, '-', '+')) do
    local fields = entry[2]
    for i = 1, #fields, 2 do
      if fields[i] == 'write' and fields[i + 1] == write_id then return true end
    end
  end
  return false
end
local function append_audit(global_stream, own_stream, first)
  local fields = {}
  for i = first, #ARGV do fields[#fields + 1] = ARGV[i] end
  redis.call('XADD', global_stream, '*', unpack(fields))
  redis.call('XADD', own_stream, '*', unpack(fields))
end
"""

# KEYS: op, lock, in-flight, audit, audit:{id}
# ARGV: record, write id, takes lock (1/0), lock json, ttl ms, op id, score, audit fields…
_LUA_CREATE = (
    _LUA_HAS_WRITE
    + """
if redis.call('EXISTS', KEYS[1]) == 1 then
  if has_write(KEYS[5], ARGV[2]) then return {'ok'} end
  return {'duplicate'}
end
if ARGV[3] == '1' then
  if not redis.call('SET', KEYS[2], ARGV[4], 'NX', 'PX', ARGV[5]) then
    return {'busy', redis.call('GET', KEYS[2])}
  end
  redis.call('ZADD', KEYS[3], ARGV[7], ARGV[6])
end
redis.call('SET', KEYS[1], ARGV[1])
append_audit(KEYS[4], KEYS[5], 8)
return {'ok'}
"""
)

# KEYS: op, lock, in-flight, audit, audit:{id}
# ARGV: record, write id, expected version, in flight (1/0), terminal (1/0), op id, score, audit fields…
_LUA_REPLACE = (
    _LUA_HAS_WRITE
    + """
local current = redis.call('GET', KEYS[1])
if not current then return {'missing'} end
local version = cjson.decode(current)['version']
if version ~= tonumber(ARGV[3]) then
  if has_write(KEYS[5], ARGV[2]) then return {'ok'} end
  return {'conflict', tostring(version)}
end
local lock = redis.call('GET', KEYS[2])
local owner = lock and cjson.decode(lock)['operation_id']
if ARGV[4] == '1' and lock and owner ~= ARGV[6] then return {'busy', lock} end
redis.call('SET', KEYS[1], ARGV[1])
if ARGV[4] == '1' then
  redis.call('ZADD', KEYS[3], ARGV[7], ARGV[6])
else
  redis.call('ZREM', KEYS[3], ARGV[6])
end
if ARGV[5] == '1' and owner == ARGV[6] then redis.call('DEL', KEYS[2]) end
append_audit(KEYS[4], KEYS[5], 8)
return {'ok'}
"""
)

# KEYS: op, lock.  ARGV: op id, ttl ms, lock json (to take it again after expiry), in-flight phases…
_LUA_REFRESH = """
local current = redis.call('GET', KEYS[1])
if not current then return {'idle'} end
local phase = cjson.decode(current)['phase']
local in_flight = false
for i = 4, #ARGV do if ARGV[i] == phase then in_flight = true end end
if not in_flight then return {'idle'} end
local lock = redis.call('GET', KEYS[2])
if not lock then
  redis.call('SET', KEYS[2], ARGV[3], 'PX', ARGV[2])
  return {'taken'}
end
if cjson.decode(lock)['operation_id'] == ARGV[1] then
  redis.call('PEXPIRE', KEYS[2], ARGV[2])
  return {'refreshed'}
end
return {'busy', lock}
"""

# KEYS: seen:{key}.  ARGV: token, ttl ms. The token makes a resent command after a lost reply still say "first".
_LUA_FIRST_DELIVERY = """
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return 1 end
if redis.call('GET', KEYS[1]) == ARGV[1] then return 1 end
return 0
"""


def describe_busy(target: TargetName | str, holder: LockInfo) -> str:
    """The TargetBusy text: `workshop is locked by op-1a2b (requested by <@U0AAA> at 14:02 UTC)`."""
    return (
        f"{target} is locked by {holder.operation_id} "
        f"(requested by <@{holder.requester}> at {holder.since.astimezone(UTC):%H:%M} UTC)"
    )


class RedisOperationStore:
    """The `OperationStore` port on Redis ≥ 7. Thread-safe (redis-py's connection pool is)."""

    def __init__(
        self,
        redis_client: redis.Redis,
        clock: Clock,
        *,
        key_prefix: str = "rollbot:",
        probe_timeout: timedelta = timedelta(milliseconds=500),
    ) -> None:
        self._redis = redis_client
        self._clock = clock
        self._prefix = key_prefix
        self._create_script = redis_client.register_script(_LUA_CREATE)
        self._replace_script = redis_client.register_script(_LUA_REPLACE)
        self._refresh_script = redis_client.register_script(_LUA_REFRESH)
        self._first_delivery_script = redis_client.register_script(_LUA_FIRST_DELIVERY)
        self._probe = _probe_client(redis_client, probe_timeout)
        self._owns_client = False  # from_url() made the client, so close() closes it too

    @classmethod
    def from_url(
        cls,
        url: str,
        clock: Clock,
        *,
        key_prefix: str = "rollbot:",
        timeout: timedelta = timedelta(seconds=2),
    ) -> RedisOperationStore:
        """A store with its own client: short socket timeouts and a brief retry on dropped connections."""
        seconds = timeout.total_seconds()
        client = redis.Redis.from_url(
            url,
            socket_timeout=seconds,
            socket_connect_timeout=seconds,
            # redis-py resends a command after a connection error; the write ids make that safe (module doc).
            retry=Retry(ExponentialBackoff(cap=0.5, base=0.05), retries=2),
            health_check_interval=30,
        )
        store = cls(client, clock, key_prefix=key_prefix)
        store._owns_client = True
        return store

    def close(self) -> None:
        """Release the store's own connections; an injected client belongs to the caller and stays open."""
        self._probe.close()
        if self._owns_client:
            self._redis.close()

    def create(self, operation: Operation, lock_ttl: timedelta) -> None:
        takes_lock = operation.phase.is_in_flight
        lock = self._lock_info(operation)
        write_id = _new_write_id()
        with self._translating_errors():
            reply = self._create_script(
                keys=self._write_keys(operation),
                args=[
                    operation.model_dump_json(),
                    write_id,
                    "1" if takes_lock else "0",
                    lock.model_dump_json(),
                    _milliseconds(lock_ttl),
                    operation.id,
                    operation.created_at.timestamp(),
                    *self._audit_fields(operation, write_id, actor=operation.requester, note=None),
                ],
            )
        outcome, *rest = _texts(reply)
        if outcome == "duplicate":
            raise DuplicateOperation(f"operation {operation.id} already exists")
        if outcome == "busy":
            holder = LockInfo.model_validate_json(rest[0])
            raise TargetBusy(describe_busy(operation.target.name, holder), holder=holder)

    def get(self, operation_id: OperationId) -> Operation | None:
        with self._translating_errors():
            record = self._redis.get(self._key("op", operation_id))
        return None if record is None else Operation.model_validate_json(record)

    def replace(
        self,
        operation: Operation,
        expected_version: int,
        actor: SlackUserId | None = None,
        note: str | None = None,
    ) -> None:
        if operation.version != expected_version + 1:
            raise ValueError(
                f"operation {operation.id} must carry version {expected_version + 1}, not {operation.version}"
            )
        write_id = _new_write_id()
        with self._translating_errors():
            reply = self._replace_script(
                keys=self._write_keys(operation),
                args=[
                    operation.model_dump_json(),
                    write_id,
                    expected_version,
                    "1" if operation.phase.is_in_flight else "0",
                    "1" if operation.phase.is_terminal else "0",
                    operation.id,
                    operation.created_at.timestamp(),
                    *self._audit_fields(operation, write_id, actor=actor, note=note),
                ],
            )
        outcome, *rest = _texts(reply)
        if outcome == "missing":
            raise ConcurrentUpdate(f"operation {operation.id} does not exist")
        if outcome == "conflict":
            raise ConcurrentUpdate(f"operation {operation.id} is at version {rest[0]}, not {expected_version}")
        if outcome == "busy":
            holder = LockInfo.model_validate_json(rest[0])
            raise TargetBusy(describe_busy(operation.target.name, holder), holder=holder)

    def link_message(self, operation_id: OperationId, ref: MessageRef) -> None:
        with self._translating_errors():
            self._redis.set(self._key("op-by-msg", ref.channel, ref.ts), operation_id)

    def find_by_message(self, ref: MessageRef) -> Operation | None:
        with self._translating_errors():
            operation_id = self._redis.get(self._key("op-by-msg", ref.channel, ref.ts))
        return None if operation_id is None else self.get(OperationId(_text(operation_id)))

    def lock_holder(self, lock_key: str) -> LockInfo | None:
        with self._translating_errors():
            lock = self._redis.get(self._key("lock", lock_key))
        return None if lock is None else LockInfo.model_validate_json(lock)

    def refresh_lock(self, operation: Operation, ttl: timedelta) -> None:
        """Extend the lock if `operation` holds it, or take it again if it expired while nobody else took it.

        Does nothing for an operation that is (in the store) no longer in flight. Raises TargetBusy when
        another operation took the target meanwhile: the caller must not go on executing.
        """
        with self._translating_errors():
            reply = self._refresh_script(
                keys=[self._key("op", operation.id), self._key("lock", operation.target.lock_key)],
                args=[
                    operation.id,
                    _milliseconds(ttl),
                    self._lock_info(operation).model_dump_json(),
                    *_IN_FLIGHT_PHASES,
                ],
            )
        outcome, *rest = _texts(reply)
        if outcome == "busy":
            holder = LockInfo.model_validate_json(rest[0])
            raise TargetBusy(describe_busy(operation.target.name, holder), holder=holder)

    def in_flight(self) -> Sequence[Operation]:
        with self._translating_errors():
            ids = self._redis.zrange(self._key("in-flight"), 0, -1)
            records = self._redis.mget([self._key("op", _text(i)) for i in ids]) if ids else []
        operations = (Operation.model_validate_json(r) for r in records if r is not None)
        return [op for op in operations if op.phase.is_in_flight]

    def first_delivery(self, key: str, ttl: timedelta) -> bool:
        with self._translating_errors():
            reply = self._first_delivery_script(
                keys=[self._key("seen", key)], args=[_new_write_id(), _milliseconds(ttl)]
            )
        return bool(reply)

    def audit(self, operation_id: OperationId) -> Sequence[AuditEntry]:
        with self._translating_errors():
            entries = self._redis.xrange(self._key("audit", operation_id))
        return [_audit_entry({_text(k): _text(v) for k, v in fields.items()}) for _, fields in entries or () if fields]

    def is_reachable(self) -> bool:
        """PING with a short timeout and no retries; never raises."""
        try:
            return bool(self._probe.ping())
        except (redis.RedisError, OSError):
            return False

    def _key(self, *parts: str) -> str:
        return self._prefix + ":".join(parts)

    def _write_keys(self, operation: Operation) -> list[str]:
        return [
            self._key("op", operation.id),
            self._key("lock", operation.target.lock_key),
            self._key("in-flight"),
            self._key("audit"),
            self._key("audit", operation.id),
        ]

    def _lock_info(self, operation: Operation) -> LockInfo:
        return LockInfo(operation_id=operation.id, requester=operation.requester, since=operation.created_at)

    def _audit_fields(
        self, operation: Operation, write_id: str, *, actor: SlackUserId | None, note: str | None
    ) -> list[str]:
        fields = {
            "operation_id": operation.id,
            "phase": operation.phase.value,
            "version": str(operation.version),
            "at": self._clock.now().isoformat(),
            "target": operation.target.lock_key,
            "write": write_id,
        }
        if actor is not None:
            fields["actor"] = actor
        if note is not None:
            fields["note"] = note
        return [part for pair in fields.items() for part in pair]

    @contextmanager
    def _translating_errors(self) -> Iterator[None]:
        try:
            yield
        except (redis.RedisError, OSError) as exc:
            raise StoreUnavailable(f"operation store: {type(exc).__name__}: {exc}") from exc


def _probe_client(client: redis.Redis, timeout: timedelta) -> redis.Redis:
    """A client on the same server as `client`, with a short timeout and no retries, for health checks."""
    pool = client.connection_pool
    seconds = timeout.total_seconds()
    kwargs: dict[str, Any] = dict(pool.connection_kwargs)
    kwargs.update(socket_timeout=seconds, socket_connect_timeout=seconds, retry=Retry(NoBackoff(), retries=0))
    probe_pool = redis.ConnectionPool(connection_class=pool.connection_class, max_connections=2, **kwargs)
    return redis.Redis(connection_pool=probe_pool)


def _audit_entry(fields: dict[str, str]) -> AuditEntry:
    return AuditEntry(
        operation_id=OperationId(fields["operation_id"]),
        at=datetime.fromisoformat(fields["at"]),
        phase=fields["phase"],
        version=int(fields["version"]),
        actor=SlackUserId(fields["actor"]) if "actor" in fields else None,
        note=fields.get("note"),
    )


def _new_write_id() -> str:
    return uuid.uuid4().hex


def _milliseconds(duration: timedelta) -> int:
    # Redis refuses PX 0; anything shorter than a millisecond still means "expire almost at once".
    return max(1, int(duration.total_seconds() * 1000))


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _texts(reply: Any) -> list[str]:
    return [_text(part) for part in reply]
