"""`RedisOperationStore`: the journal of operations in Redis, shared by every bot replica.

Keys, all under one tagged prefix (`rollbot:` becomes ``rollbot:{rollbot}:``, see `tagged_prefix`):

    op:{id}                    the operation, as pydantic JSON
    op-by-msg:{channel}:{ts}   → operation id, for reactions on the request message
    links:{id}                 set of the op-by-msg keys pointing at the operation (they expire with it)
    lock:{target.lock_key}     JSON LockInfo {operation_id, requester, since}, with a TTL; a batch holds one
                               per member, taken together or not at all, released together
    in-flight                  sorted set of in-flight operation ids, scored by created_at
    audit                      stream of every write (operation id, phase, version, actor, note, at), capped
                               at about `audit_max` entries
    audit:{id}                 the same entries, for one operation
    seen:{key}                 first-delivery markers (Slack event_id, command idempotency), with a TTL
    inbox:…                    parked work and replica heartbeats (bot.adapters.redis_inbox)

Every write is one Lua script (bot.adapters.redis_scripts), atomic in one round trip: the compare-and-set on
`version`, the fencing check, the lock, the in-flight index and the audit entry move together or not at all.
Each write also carries a random `write` id recorded in its audit entry; when a reply is lost and redis-py
resends the same script (a dropped connection, a Sentinel failover), the second run finds its own write id and
reports success instead of a false conflict, duplicate or fence. Compare-and-set conflicts are not retried
here: the flow re-reads and decides again.

Finished operations (terminal phases) expire after `retention`, with their audit trail and message links;
operations in flight never expire.
"""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import redis
from redis.commands.core import Script

from bot.adapters import redis_scripts
from bot.adapters.redis_connect import RedisClient, RedisConnection, connect, probe_for
from bot.core.catalog import SlackUserId, TargetName
from bot.core.errors import ConcurrentUpdate, DuplicateOperation, FencedOut, StoreUnavailable, TargetBusy
from bot.core.operations import MessageRef, Operation, OperationId, Phase
from bot.ports import AuditEntry, Clock, LockInfo

DEFAULT_KEY_PREFIX: Final = "rollbot:"
# How long an in-flight write that finds its lock expired takes it again for, when the caller names no TTL.
DEFAULT_LOCK_TTL: Final = timedelta(minutes=2)
DEFAULT_RETENTION: Final = timedelta(days=30)
DEFAULT_AUDIT_MAX: Final = 1_000_000

# Phases whose operation holds its target's lock (mirrors Phase.is_in_flight, passed to the scripts).
_IN_FLIGHT_PHASES: Final = tuple(phase.value for phase in Phase if phase.is_in_flight)
_HASH_TAG = re.compile(r"\{[^{}]+\}")

log = logging.getLogger(__name__)


def tagged_prefix(key_prefix: str) -> str:
    """The prefix every key starts with, with one Redis Cluster hash tag: `rollbot:` → `rollbot:{rollbot}:`.

    A prefix that already carries a `{tag}` is used as it is. One tag for every key puts them all in one slot,
    so each script's keys sit on one node, as Redis Cluster requires.
    """
    if _HASH_TAG.search(key_prefix):
        return key_prefix
    tag = key_prefix.strip(":") or "rollbot"
    return f"{key_prefix}{{{tag}}}:"


def describe_busy(target: TargetName | str, holder: LockInfo) -> str:
    """The TargetBusy text: `workshop is locked by op-1a2b (requested by <@U0AAA> at 14:02 UTC)`."""
    return (
        f"{target} is locked by {holder.operation_id} "
        f"(requested by <@{holder.requester}> at {holder.since.astimezone(UTC):%H:%M} UTC)"
    )


class RedisOperationStore:
    """The `OperationStore` port on Redis ≥ 7: one server, Sentinel or Cluster. Thread-safe, as redis-py is."""

    def __init__(
        self,
        redis_client: RedisClient,
        clock: Clock,
        *,
        key_prefix: str = DEFAULT_KEY_PREFIX,
        probe_timeout: timedelta = timedelta(milliseconds=500),
        probe: RedisClient | None = None,
        default_lock_ttl: timedelta = DEFAULT_LOCK_TTL,
        retention: timedelta = DEFAULT_RETENTION,
        audit_max: int = DEFAULT_AUDIT_MAX,
        replicas_to_wait: int = 0,
        replication_timeout: timedelta = timedelta(milliseconds=500),
    ) -> None:
        self._redis = redis_client
        self._clock = clock
        self._prefix = tagged_prefix(key_prefix)
        self._default_lock_ttl = default_lock_ttl
        self._retention = retention
        self._audit_max = audit_max
        self._replicas_to_wait = replicas_to_wait
        self._replication_timeout = replication_timeout
        self._create_script = redis_client.register_script(redis_scripts.CREATE)
        self._replace_script = redis_client.register_script(redis_scripts.REPLACE)
        self._refresh_script = redis_client.register_script(redis_scripts.REFRESH)
        self._link_script = redis_client.register_script(redis_scripts.LINK_MESSAGE)
        self._first_delivery_script = redis_client.register_script(redis_scripts.FIRST_DELIVERY)
        self._owns_probe = probe is None and isinstance(redis_client, redis.Redis)
        self._probe: RedisClient
        if probe is not None:
            self._probe = probe
        elif isinstance(redis_client, redis.Redis):
            self._probe = probe_for(redis_client, probe_timeout)
        else:  # a cluster client: its PING asks the nodes itself
            self._probe = redis_client
        self._connection: RedisConnection | None = None  # from_url() made the clients, so close() closes them

    @classmethod
    def from_url(
        cls,
        url: str,
        clock: Clock,
        *,
        key_prefix: str = DEFAULT_KEY_PREFIX,
        timeout: timedelta = timedelta(seconds=2),
        default_lock_ttl: timedelta = DEFAULT_LOCK_TTL,
        retention: timedelta = DEFAULT_RETENTION,
        audit_max: int = DEFAULT_AUDIT_MAX,
    ) -> RedisOperationStore:
        """A store with its own clients for REDIS_URL (one server, a Cluster node, or `redis+sentinel://`).

        Behind Sentinel every write also waits briefly for a replica to have it, so that a failover right after
        an acknowledged write does not lose it. Raises RedisUrlError (a ValueError) for a malformed URL.
        """
        connection = connect(url, timeout=timeout)
        store = cls(
            connection.client,
            clock,
            key_prefix=key_prefix,
            probe=connection.probe,
            default_lock_ttl=default_lock_ttl,
            retention=retention,
            audit_max=audit_max,
            replicas_to_wait=1 if connection.kind == "sentinel" else 0,
        )
        store._connection = connection
        return store

    @property
    def client(self) -> RedisClient:
        """The client the store writes with; the inbox shares it."""
        return self._redis

    @property
    def key_prefix(self) -> str:
        """The tagged prefix of every key, e.g. `rollbot:{rollbot}:`."""
        return self._prefix

    def close(self) -> None:
        """Release the store's own connections; an injected client belongs to the caller and stays open."""
        if self._connection is not None:
            self._connection.close()
        elif self._owns_probe:
            self._probe.close()

    def create(self, operation: Operation, lock_ttl: timedelta) -> None:
        write_id = _new_write_id()
        reply = self._run(
            self._create_script,
            self._write_keys(operation),
            [
                operation.model_dump_json(),
                write_id,
                "1" if operation.phase.is_in_flight else "0",
                self._lock_info(operation).model_dump_json(),
                _milliseconds(lock_ttl),
                operation.id,
                operation.created_at.timestamp(),
                "1" if operation.phase.is_terminal else "0",
                _milliseconds(self._retention),
                self._audit_max,
                *self._audit_fields(operation, write_id, actor=operation.requester, note=None),
            ],
        )
        outcome, *rest = _texts(reply)
        if outcome == "duplicate":
            raise DuplicateOperation(f"operation {operation.id} already exists")
        if outcome == "busy":
            raise target_busy(operation, _busy_holders(operation, rest))

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
        *,
        fence: int | None = None,
        lock_ttl: timedelta | None = None,
    ) -> None:
        if operation.version != expected_version + 1:
            raise ValueError(
                f"operation {operation.id} must carry version {expected_version + 1}, not {operation.version}"
            )
        write_id = _new_write_id()
        reply = self._run(
            self._replace_script,
            self._write_keys(operation),
            [
                operation.model_dump_json(),
                write_id,
                expected_version,
                "1" if operation.phase.is_in_flight else "0",
                "1" if operation.phase.is_terminal else "0",
                operation.id,
                operation.created_at.timestamp(),
                "" if fence is None else fence,
                operation.fence,
                self._lock_info(operation).model_dump_json(),
                "" if lock_ttl is None else _milliseconds(lock_ttl),
                _milliseconds(self._default_lock_ttl),
                _milliseconds(self._retention),
                self._audit_max,
                *self._audit_fields(operation, write_id, actor=actor, note=note),
            ],
        )
        outcome, *rest = _texts(reply)
        if outcome == "missing":
            raise ConcurrentUpdate(f"operation {operation.id} does not exist")
        if outcome == "fenced":
            raise FencedOut(describe_fenced_out(operation, stored_fence=int(rest[0]), fence=fence))
        if outcome == "fence-jump":
            raise ValueError(describe_fence_jump(operation, stored_fence=int(rest[0])))
        if outcome == "conflict":
            raise ConcurrentUpdate(f"operation {operation.id} is at version {rest[0]}, not {expected_version}")
        if outcome == "busy":
            raise target_busy(operation, _busy_holders(operation, rest))

    def link_message(self, operation_id: OperationId, ref: MessageRef) -> None:
        keys = [
            self._key("op-by-msg", ref.channel, ref.ts),
            self._key("links", operation_id),
            self._key("op", operation_id),
        ]
        self._run(self._link_script, keys, [operation_id])

    def find_by_message(self, ref: MessageRef) -> Operation | None:
        with self._translating_errors():
            operation_id = self._redis.get(self._key("op-by-msg", ref.channel, ref.ts))
        return None if operation_id is None else self.get(OperationId(_text(operation_id)))

    def lock_holder(self, lock_key: str) -> LockInfo | None:
        with self._translating_errors():
            lock = self._redis.get(self._key("lock", lock_key))
        return None if lock is None else LockInfo.model_validate_json(lock)

    def refresh_lock(self, operation: Operation, ttl: timedelta, *, fence: int | None = None) -> None:
        """Extend the lock if `operation` holds it, or take it again if it expired while nobody else took it.

        Does nothing for an operation that is (in the store) no longer in flight. Raises TargetBusy when
        another operation took the target meanwhile, FencedOut when `fence` is no longer the current token:
        either way the caller must not go on executing.
        """
        reply = self._run(
            self._refresh_script,
            [self._key("op", operation.id), *(self._key("lock", key) for key in operation.lock_keys)],
            [
                operation.id,
                _milliseconds(ttl),
                self._lock_info(operation).model_dump_json(),
                "" if fence is None else fence,
                *_IN_FLIGHT_PHASES,
            ],
        )
        outcome, *rest = _texts(reply)
        if outcome == "fenced":
            raise FencedOut(describe_fenced_out(operation, stored_fence=int(rest[0]), fence=fence))
        if outcome == "busy":
            raise target_busy(operation, _busy_holders(operation, rest))

    def in_flight(self) -> Sequence[Operation]:
        with self._translating_errors():
            ids = self._redis.zrange(self._key("in-flight"), 0, -1)
            records = self._redis.mget([self._key("op", _text(i)) for i in ids]) if ids else []
        operations = (Operation.model_validate_json(r) for r in records if r is not None)
        return [op for op in operations if op.phase.is_in_flight]

    def first_delivery(self, key: str, ttl: timedelta) -> bool:
        keys = [self._key("seen", key)]
        return bool(self._run(self._first_delivery_script, keys, [_new_write_id(), _milliseconds(ttl)]))

    def is_delivered(self, key: str) -> bool:
        with self._translating_errors():
            return bool(self._redis.exists(self._key("seen", key)))

    def audit(self, operation_id: OperationId) -> Sequence[AuditEntry]:
        with self._translating_errors():
            entries = self._redis.xrange(self._key("audit", operation_id))
        return [_audit_entry({_text(k): _text(v) for k, v in fields.items()}) for _, fields in entries or () if fields]

    def is_reachable(self) -> bool:
        """PING with a short timeout and no retries (behind Sentinel: the current master); never raises."""
        try:
            return bool(self._probe.ping())
        except (redis.RedisError, OSError):
            return False

    def _run(self, script: Script, keys: list[str], args: list[Any]) -> Any:
        """Run a write script; with `replicas_to_wait`, WAIT on the same connection until replicas have it."""
        with self._translating_errors():
            if not self._replicas_to_wait or not isinstance(self._redis, redis.Redis):
                return script(keys=keys, args=args)
            pipeline = self._redis.pipeline(transaction=False)
            script(keys=keys, args=args, client=pipeline)
            pipeline.wait(self._replicas_to_wait, _milliseconds(self._replication_timeout))
            reply, acknowledged = pipeline.execute()
        if int(acknowledged) < self._replicas_to_wait:
            # On the master only for now: a failover before a replica catches up would lose this write.
            log.warning("redis write not yet on a replica", extra={"replicas_acknowledged": acknowledged})
        return reply

    def _key(self, *parts: str) -> str:
        return self._prefix + ":".join(parts)

    def _write_keys(self, operation: Operation) -> list[str]:
        return [
            self._key("op", operation.id),
            self._key("in-flight"),
            self._key("audit"),
            self._key("audit", operation.id),
            self._key("links", operation.id),
            *(self._key("lock", key) for key in operation.lock_keys),
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


def lock_names(operation: Operation) -> tuple[str, ...]:
    """The name people use for each of `operation.lock_keys`, in the same order."""
    if operation.members:
        return tuple(member.target.name for member in operation.members)
    return (operation.target.name,)


def target_busy(operation: Operation, holders: Mapping[str, LockInfo]) -> TargetBusy:
    """The TargetBusy for the busy locks of `operation` (name → holder), naming every holder."""
    text = "; ".join(describe_busy(name, holder) for name, holder in holders.items())
    return TargetBusy(text, holder=next(iter(holders.values())), holders=holders)


def _busy_holders(operation: Operation, rest: list[str]) -> dict[str, LockInfo]:
    """The script's `busy` reply (lock index from 1, its JSON, …) as name → holder."""
    names = lock_names(operation)
    return {names[int(rest[i]) - 1]: LockInfo.model_validate_json(rest[i + 1]) for i in range(0, len(rest), 2)}


def describe_fenced_out(operation: Operation, *, stored_fence: int, fence: int | None) -> str:
    """The FencedOut text (shared with the in-memory fake)."""
    writer = operation.fence if fence is None else fence
    return f"operation {operation.id} is now fenced at {stored_fence}; this write with fence {writer} is stale"


def describe_fence_jump(operation: Operation, *, stored_fence: int) -> str:
    """A write that raises the fence by more than one: a bug in the caller (shared with the in-memory fake)."""
    return f"operation {operation.id} may raise its fence from {stored_fence} by one at most, not to {operation.fence}"


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
