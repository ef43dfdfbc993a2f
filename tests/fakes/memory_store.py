"""`InMemoryOperationStore`: the operation store's contract without Redis, for fast flow tests.

It keeps what Redis keeps (records as JSON, the message index, per-target locks with a TTL, first-delivery
keys, the audit trail) in dictionaries behind one lock, and reads time from the injected clock, so a test
expires a lock with `clock.advance()`. tests/contracts/test_operation_store.py holds it to the same suite as
`RedisOperationStore`.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from bot.adapters.redis_store import describe_busy
from bot.core.catalog import SlackUserId
from bot.core.errors import ConcurrentUpdate, DuplicateOperation, TargetBusy
from bot.core.operations import MessageRef, Operation, OperationId
from bot.ports import AuditEntry, Clock, LockInfo


@dataclass(frozen=True)
class _Lease:
    holder: LockInfo
    until: datetime


class InMemoryOperationStore:
    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._mutex = threading.Lock()
        # Records are kept serialised, as in Redis: nobody can mutate a stored dict through a returned model.
        self._records: dict[OperationId, str] = {}
        self._by_message: dict[tuple[str, str], OperationId] = {}
        self._locks: dict[str, _Lease] = {}
        self._seen: dict[str, datetime] = {}
        self._audit: dict[OperationId, list[AuditEntry]] = {}
        self.audit_log: list[AuditEntry] = []  # the global stream, oldest first
        self.is_available = True  # set False to simulate an unreachable store in is_reachable()

    def create(self, operation: Operation, lock_ttl: timedelta) -> None:
        with self._mutex:
            if operation.id in self._records:
                raise DuplicateOperation(f"operation {operation.id} already exists")
            if operation.phase.is_in_flight:
                lease = self._live_lease(operation.target.lock_key)
                if lease is not None:
                    raise TargetBusy(describe_busy(operation.target.name, lease.holder), holder=lease.holder)
                self._take(operation, lock_ttl)
            self._records[operation.id] = operation.model_dump_json()
            self._append_audit(operation, actor=operation.requester, note=None)

    def get(self, operation_id: OperationId) -> Operation | None:
        with self._mutex:
            return self._load(operation_id)

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
        from bot.core.errors import FencedOut

        if operation.version != expected_version + 1:
            raise ValueError(
                f"operation {operation.id} must carry version {expected_version + 1}, not {operation.version}"
            )
        with self._mutex:
            stored = self._load(operation.id)
            if stored is None:
                raise ConcurrentUpdate(f"operation {operation.id} does not exist")
            if fence is not None and stored.fence != fence:
                raise FencedOut("fenced")
            if stored.version != expected_version:
                raise ConcurrentUpdate(
                    f"operation {operation.id} is at version {stored.version}, not {expected_version}"
                )
            lease = self._live_lease(operation.target.lock_key)
            if operation.phase.is_in_flight and lease is not None and lease.holder.operation_id != operation.id:
                raise TargetBusy(describe_busy(operation.target.name, lease.holder), holder=lease.holder)
            self._records[operation.id] = operation.model_dump_json()
            if operation.phase.is_terminal and lease is not None and lease.holder.operation_id == operation.id:
                del self._locks[operation.target.lock_key]
            self._append_audit(operation, actor=actor, note=note)

    def link_message(self, operation_id: OperationId, ref: MessageRef) -> None:
        with self._mutex:
            self._by_message[(ref.channel, ref.ts)] = operation_id

    def find_by_message(self, ref: MessageRef) -> Operation | None:
        with self._mutex:
            operation_id = self._by_message.get((ref.channel, ref.ts))
            return None if operation_id is None else self._load(operation_id)

    def lock_holder(self, lock_key: str) -> LockInfo | None:
        with self._mutex:
            lease = self._live_lease(lock_key)
            return None if lease is None else lease.holder

    def refresh_lock(self, operation: Operation, ttl: timedelta, *, fence: int | None = None) -> None:
        from bot.core.errors import FencedOut

        with self._mutex:
            stored = self._load(operation.id)
            if fence is not None and stored is not None and stored.fence != fence:
                raise FencedOut("fenced")
            if stored is None or not stored.phase.is_in_flight:
                return
            lease = self._live_lease(operation.target.lock_key)
            if lease is None:
                self._take(stored, ttl)
            elif lease.holder.operation_id == operation.id:
                self._locks[operation.target.lock_key] = _Lease(lease.holder, self._clock.now() + ttl)
            else:
                raise TargetBusy(describe_busy(operation.target.name, lease.holder), holder=lease.holder)

    def in_flight(self) -> Sequence[Operation]:
        with self._mutex:
            operations = [Operation.model_validate_json(record) for record in self._records.values()]
        return sorted((op for op in operations if op.phase.is_in_flight), key=lambda op: (op.created_at, op.id))

    def first_delivery(self, key: str, ttl: timedelta) -> bool:
        with self._mutex:
            now = self._clock.now()
            until = self._seen.get(key)
            if until is not None and until > now:
                return False
            self._seen[key] = now + ttl
            return True

    def is_delivered(self, key: str) -> bool:
        with self._mutex:
            until = self._seen.get(key)
            return until is not None and until > self._clock.now()

    def audit(self, operation_id: OperationId) -> Sequence[AuditEntry]:
        with self._mutex:
            return list(self._audit.get(operation_id, ()))

    def is_reachable(self) -> bool:
        return self.is_available

    def _load(self, operation_id: OperationId) -> Operation | None:
        record = self._records.get(operation_id)
        return None if record is None else Operation.model_validate_json(record)

    def _live_lease(self, lock_key: str) -> _Lease | None:
        lease = self._locks.get(lock_key)
        if lease is not None and lease.until <= self._clock.now():
            del self._locks[lock_key]
            return None
        return lease

    def _take(self, operation: Operation, ttl: timedelta) -> None:
        holder = LockInfo(operation_id=operation.id, requester=operation.requester, since=operation.created_at)
        self._locks[operation.target.lock_key] = _Lease(holder, self._clock.now() + ttl)

    def _append_audit(self, operation: Operation, *, actor: SlackUserId | None, note: str | None) -> None:
        entry = AuditEntry(
            operation_id=operation.id,
            at=self._clock.now(),
            phase=operation.phase.value,
            version=operation.version,
            actor=actor,
            note=note,
        )
        self._audit.setdefault(operation.id, []).append(entry)
        self.audit_log.append(entry)
