"""`InMemoryInbox`: the `Inbox` port without Redis, for flow tests.

Parked work and heartbeats live in dictionaries behind one lock; a heartbeat lapses when the injected clock
passes its TTL. tests/contracts/test_inbox.py holds it to the same suite as `RedisInbox`.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from datetime import datetime, timedelta

from bot.ports import Clock, ParkedWork


class InMemoryInbox:
    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._mutex = threading.Lock()
        self._parked: dict[str, ParkedWork] = {}  # insertion order, as a Redis hash of this size keeps it
        self._alive_until: dict[str, datetime] = {}

    def park(self, key: str, payload: str, replica: str) -> None:
        with self._mutex:
            self._parked.pop(key, None)
            self._parked[key] = ParkedWork(key=key, payload=payload, replica=replica, parked_at=self._clock.now())

    def unpark(self, key: str) -> None:
        with self._mutex:
            self._parked.pop(key, None)

    def heartbeat(self, replica: str, ttl: timedelta) -> None:
        with self._mutex:
            self._alive_until[replica] = self._clock.now() + ttl

    def goodbye(self, replica: str) -> None:
        with self._mutex:
            self._alive_until.pop(replica, None)

    def adopt(self, replica: str, limit: int = 100) -> Sequence[ParkedWork]:
        with self._mutex:
            now = self._clock.now()
            adopted: list[ParkedWork] = []
            for key, work in self._parked.items():
                if len(adopted) >= limit:
                    break
                alive_until = self._alive_until.get(work.replica)
                if work.replica == replica or (alive_until is not None and alive_until > now):
                    continue
                taken = work.model_copy(update={"replica": replica})
                self._parked[key] = taken
                adopted.append(taken)
            return adopted

    def parked(self) -> Sequence[ParkedWork]:
        with self._mutex:
            return sorted(self._parked.values(), key=lambda work: work.parked_at)
