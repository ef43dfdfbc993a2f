"""A clock that only moves when the test says so (the `Clock` port, for deterministic expiry and TTLs)."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

# A fixed, recognisable instant: the "14:02 UTC" of the lock messages in the specs.
DEFAULT_START = datetime(2026, 11, 22, 14, 2, tzinfo=UTC)


class ManualClock:
    """Timezone-aware UTC; `advance()` and `set()` are the only ways time passes. Thread-safe."""

    def __init__(self, start: datetime = DEFAULT_START) -> None:
        self._lock = threading.Lock()
        self._now = _as_utc(start)

    def now(self) -> datetime:
        with self._lock:
            return self._now

    def advance(self, delta: timedelta) -> datetime:
        if delta < timedelta(0):
            raise ValueError("time does not run backwards; use set() for that")
        with self._lock:
            self._now += delta
            return self._now

    def set(self, instant: datetime) -> None:
        with self._lock:
            self._now = _as_utc(instant)


def _as_utc(instant: datetime) -> datetime:
    if instant.tzinfo is None:
        raise ValueError("ManualClock needs a timezone-aware datetime")
    return instant.astimezone(UTC)
