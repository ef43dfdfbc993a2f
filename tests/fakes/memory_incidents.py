"""In-memory `IncidentStore` and `ContextLeases`: the same contract as Redis, for fast flow tests.

Both read time from the injected clock (lease expiry, the retention of resolved incidents), so a test lets a
lease lapse with `clock.advance()`. tests/contracts/test_incident_store.py holds them to the Redis suite.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Sequence
from datetime import datetime, timedelta

from bot.adapters.redis_store import DEFAULT_RETENTION
from bot.core.errors import ConcurrentUpdate, FencedOut
from bot.core.incidents import Incident, IncidentId, IncidentState
from bot.ports import Clock, ContextFence, PendingVerification


class InMemoryContextLeases:
    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._mutex = threading.Lock()
        self._held: dict[str, tuple[str, int, datetime]] = {}
        self._tokens: dict[str, itertools.count[int]] = {}

    def acquire(self, lease: str, holder: str, ttl: timedelta) -> ContextFence | None:
        with self._mutex:
            current = self._current(lease)
            now = self._clock.now()
            if current is not None and current[0] != holder:
                return None
            if current is not None:
                self._held[lease] = (holder, current[1], now + ttl)
                return ContextFence(lease=lease, token=current[1])
            token = next(self._tokens.setdefault(lease, itertools.count(1)))
            self._held[lease] = (holder, token, now + ttl)
            return ContextFence(lease=lease, token=token)

    def renew(self, fence: ContextFence, holder: str, ttl: timedelta) -> bool:
        with self._mutex:
            if self._current(fence.lease) != (holder, fence.token):
                return False
            self._held[fence.lease] = (holder, fence.token, self._clock.now() + ttl)
            return True

    def release(self, fence: ContextFence, holder: str) -> None:
        with self._mutex:
            if self._current(fence.lease) == (holder, fence.token):
                del self._held[fence.lease]

    def token(self, lease: str) -> int | None:
        with self._mutex:
            current = self._current(lease)
        return None if current is None else current[1]

    def _current(self, lease: str) -> tuple[str, int] | None:
        held = self._held.get(lease)
        if held is None or held[2] <= self._clock.now():
            return None
        return held[0], held[1]


class InMemoryIncidentStore:
    def __init__(
        self, clock: Clock, leases: InMemoryContextLeases, *, retention: timedelta = DEFAULT_RETENTION
    ) -> None:
        self._clock = clock
        self._leases = leases
        self._retention = retention
        self._mutex = threading.Lock()
        self._records: dict[IncidentId, str] = {}
        self._expires: dict[IncidentId, datetime] = {}
        self._by_key: dict[str, IncidentId] = {}
        self._by_workload: dict[str, IncidentId] = {}
        self._verifications: dict[str, PendingVerification] = {}

    def create(self, incident: Incident, *, fence: ContextFence | None = None) -> None:
        with self._mutex:
            self._check_fence(incident, fence)
            if self._load(incident.id) is not None:
                raise ConcurrentUpdate(f"incident {incident.id} exists")
            holder_id = self._by_key.get(incident.key)
            holder = self._load(holder_id) if holder_id else None
            if holder is not None and holder.state is not IncidentState.RESOLVED:
                raise ConcurrentUpdate(f"incident key {incident.key} is held by {holder.id}")
            self._by_key[incident.key] = incident.id
            self._by_workload[incident.workload.key] = incident.id
            self._store(incident)

    def get(self, incident_id: IncidentId) -> Incident | None:
        with self._mutex:
            return self._load(incident_id)

    def find_by_key(self, key: str) -> Incident | None:
        with self._mutex:
            found = self._by_key.get(key)
            return self._load(found) if found else None

    def find_by_workload(self, workload_key: str) -> Incident | None:
        with self._mutex:
            found = self._by_workload.get(workload_key)
            return self._load(found) if found else None

    def replace(self, incident: Incident, expected_version: int, *, fence: ContextFence | None = None) -> None:
        if incident.version != expected_version + 1:
            raise ValueError(f"incident {incident.id} must carry version {expected_version + 1}")
        with self._mutex:
            self._check_fence(incident, fence)
            current = self._load(incident.id)
            if current is None:
                raise ConcurrentUpdate(f"incident {incident.id} does not exist")
            if current.version != expected_version:
                raise ConcurrentUpdate(f"incident {incident.id} is at version {current.version}")
            self._by_key.setdefault(incident.key, incident.id)
            self._store(incident)

    def live(self) -> Sequence[Incident]:
        with self._mutex:
            found = [self._load(incident_id) for incident_id in sorted(self._records)]
        return [i for i in found if i is not None and (i.state is not IncidentState.RESOLVED or i.is_card_stale)]

    def holds(self, fence: ContextFence) -> bool:
        return self._leases.token(fence.lease) == fence.token

    def add_verification(self, pending: PendingVerification) -> None:
        with self._mutex:
            self._verifications[pending.operation_id] = pending

    def pending_verifications(self) -> Sequence[PendingVerification]:
        with self._mutex:
            return list(self._verifications.values())

    def finish_verification(self, pending: PendingVerification) -> None:
        with self._mutex:
            self._verifications.pop(pending.operation_id, None)

    def _check_fence(self, incident: Incident, fence: ContextFence | None) -> None:
        if fence is not None and self._leases.token(fence.lease) != fence.token:
            raise FencedOut(f"incident {incident.id}: the watch lease {fence.lease} has a newer holder")

    def _store(self, incident: Incident) -> None:
        self._records[incident.id] = incident.model_dump_json()
        if incident.state is IncidentState.RESOLVED:
            self._expires[incident.id] = self._clock.now() + self._retention
        else:
            self._expires.pop(incident.id, None)

    def _load(self, incident_id: IncidentId) -> Incident | None:
        expires = self._expires.get(incident_id)
        if expires is not None and expires <= self._clock.now():
            self._records.pop(incident_id, None)
            self._expires.pop(incident_id, None)
        record = self._records.get(incident_id)
        return None if record is None else Incident.model_validate_json(record)
