"""`InMemoryOperationStore`: the operation store's contract without Redis, for fast flow tests.

It keeps what Redis keeps (records as JSON, the message index, per-target locks with a TTL, first-delivery
keys, the audit trail, fencing tokens, the retention of finished operations) in dictionaries behind one lock,
and reads time from the injected clock, so a test expires a lock or a finished record with `clock.advance()`.
tests/contracts/test_operation_store.py holds it to the same suite as `RedisOperationStore`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from bot.adapters.redis_store import (
    DEFAULT_LOCK_TTL,
    DEFAULT_RETENTION,
    describe_fence_jump,
    describe_fenced_out,
    lock_names,
    target_busy,
)
from bot.core.catalog import SlackUserId
from bot.core.errors import ConcurrentUpdate, DuplicateOperation, FencedOut
from bot.core.operations import MessageRef, Operation, OperationId
from bot.ports import AuditEntry, Clock, LockInfo


@dataclass(frozen=True)
class _Lease:
    holder: LockInfo
    until: datetime


class InMemoryOperationStore:
    def __init__(
        self,
        clock: Clock,
        *,
        default_lock_ttl: timedelta = DEFAULT_LOCK_TTL,
        retention: timedelta = DEFAULT_RETENTION,
    ) -> None:
        self._clock = clock
        self._default_lock_ttl = default_lock_ttl
        self._retention = retention
        self._mutex = threading.Lock()
        # Records are kept serialised, as in Redis: nobody can mutate a stored dict through a returned model.
        self._records: dict[OperationId, str] = {}
        # When a finished operation (its record, audit trail and message links) is forgotten.
        self._forget_at: dict[OperationId, datetime] = {}
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
                # All locks together or none: every busy one is named.
                self._check_free(operation, lambda holder: True)
                self._take(operation, lock_ttl)
            self._records[operation.id] = operation.model_dump_json()
            self._append_audit(operation, actor=operation.requester, note=None)
            if operation.phase.is_terminal:
                self._forget_at[operation.id] = self._clock.now() + self._retention

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
        if operation.version != expected_version + 1:
            raise ValueError(
                f"operation {operation.id} must carry version {expected_version + 1}, not {operation.version}"
            )
        with self._mutex:
            stored = self._load(operation.id)
            if stored is None:
                raise ConcurrentUpdate(f"operation {operation.id} does not exist")
            if fence is not None and stored.fence != fence:
                raise FencedOut(describe_fenced_out(operation, stored_fence=stored.fence, fence=fence))
            if stored.version != expected_version:
                raise ConcurrentUpdate(
                    f"operation {operation.id} is at version {stored.version}, not {expected_version}"
                )
            if operation.fence < stored.fence:
                raise FencedOut(describe_fenced_out(operation, stored_fence=stored.fence, fence=fence))
            if operation.fence > stored.fence + 1:
                raise ValueError(describe_fence_jump(operation, stored_fence=stored.fence))
            if operation.phase.is_in_flight:
                self._check_free(operation, lambda holder: holder.operation_id != operation.id)
                for key in operation.lock_keys:
                    lease = self._live_lease(key)
                    if lease is None:
                        self._take_one(operation, key, lock_ttl if lock_ttl is not None else self._default_lock_ttl)
                    elif lock_ttl is not None:
                        self._locks[key] = _Lease(lease.holder, self._clock.now() + lock_ttl)
            self._records[operation.id] = operation.model_dump_json()
            if operation.phase.is_terminal:
                for key in operation.lock_keys:
                    lease = self._live_lease(key)
                    if lease is not None and lease.holder.operation_id == operation.id:
                        del self._locks[key]
            self._append_audit(operation, actor=actor, note=note)
            if operation.phase.is_terminal:
                self._forget_at[operation.id] = self._clock.now() + self._retention

    def link_message(self, operation_id: OperationId, ref: MessageRef) -> None:
        with self._mutex:
            self._by_message[(ref.channel, ref.ts)] = operation_id

    def find_by_message(self, ref: MessageRef) -> Operation | None:
        with self._mutex:
            operation_id = self._by_message.get((ref.channel, ref.ts))
            return None if operation_id is None else self._load(operation_id)

    def is_delivered(self, key: str) -> bool:
        with self._mutex:
            until = self._seen.get(key)
            return until is not None and until > self._clock.now()

    def lock_holder(self, lock_key: str) -> LockInfo | None:
        with self._mutex:
            lease = self._live_lease(lock_key)
            return None if lease is None else lease.holder

    def refresh_lock(self, operation: Operation, ttl: timedelta, *, fence: int | None = None) -> None:
        with self._mutex:
            stored = self._load(operation.id)
            if stored is None:
                return
            if fence is not None and stored.fence != fence:
                raise FencedOut(describe_fenced_out(operation, stored_fence=stored.fence, fence=fence))
            if not stored.phase.is_in_flight:
                return
            self._check_free(operation, lambda holder: holder.operation_id != operation.id)
            for key in operation.lock_keys:
                lease = self._live_lease(key)
                if lease is None:
                    self._take_one(stored, key, ttl)
                else:
                    self._locks[key] = _Lease(lease.holder, self._clock.now() + ttl)

    def in_flight(self) -> Sequence[Operation]:
        with self._mutex:
            self._forget_finished()
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

    def audit(self, operation_id: OperationId) -> Sequence[AuditEntry]:
        with self._mutex:
            self._forget_finished()
            return list(self._audit.get(operation_id, ()))

    def is_reachable(self) -> bool:
        return self.is_available

    def _load(self, operation_id: OperationId) -> Operation | None:
        self._forget_finished()
        record = self._records.get(operation_id)
        return None if record is None else Operation.model_validate_json(record)

    def _forget_finished(self) -> None:
        """What Redis' TTLs do: drop finished operations past their retention, with audit trail and links."""
        now = self._clock.now()
        gone = {operation_id for operation_id, at in self._forget_at.items() if at <= now}
        if not gone:
            return
        for operation_id in gone:
            del self._forget_at[operation_id]
            self._records.pop(operation_id, None)
            self._audit.pop(operation_id, None)
        self._by_message = {ref: op for ref, op in self._by_message.items() if op not in gone}

    def _live_lease(self, lock_key: str) -> _Lease | None:
        lease = self._locks.get(lock_key)
        if lease is not None and lease.until <= self._clock.now():
            del self._locks[lock_key]
            return None
        return lease

    def _check_free(self, operation: Operation, is_other: Callable[[LockInfo], bool]) -> None:
        """TargetBusy naming every lock of `operation` that another operation holds."""
        busy: dict[str, LockInfo] = {}
        for name, key in zip(lock_names(operation), operation.lock_keys, strict=True):
            lease = self._live_lease(key)
            if lease is not None and is_other(lease.holder):
                busy[name] = lease.holder
        if busy:
            raise target_busy(operation, busy)

    def _take(self, operation: Operation, ttl: timedelta) -> None:
        for key in operation.lock_keys:
            self._take_one(operation, key, ttl)

    def _take_one(self, operation: Operation, key: str, ttl: timedelta) -> None:
        holder = LockInfo(operation_id=operation.id, requester=operation.requester, since=operation.created_at)
        self._locks[key] = _Lease(holder, self._clock.now() + ttl)

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
