"""`RedisInbox`: acknowledged Slack gestures parked in Redis until their effect is stored (the `Inbox` port).

Keys, under the same tagged prefix as the operation store (so one Cluster slot holds them all):

    inbox:parked             hash: work key → ParkedWork JSON (payload, parking replica, parked_at)
    inbox:alive:{replica}    a replica's heartbeat, with a TTL; deleted by `goodbye()`

Work is adoptable once its replica's heartbeat key is gone (expired, or deleted on shutdown). `adopt()` is one
Lua script that rewrites each item it takes to name the adopter, so two replicas adopting at once never get
the same item, and the adopter's own heartbeat then protects it.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

import redis

from bot.adapters import redis_scripts
from bot.adapters.redis_connect import RedisClient
from bot.adapters.redis_store import DEFAULT_KEY_PREFIX, tagged_prefix
from bot.core.errors import StoreUnavailable
from bot.ports import Clock, ParkedWork


class RedisInbox:
    """The `Inbox` port on the operation store's Redis (same client, same key prefix)."""

    def __init__(self, redis_client: RedisClient, clock: Clock, *, key_prefix: str = DEFAULT_KEY_PREFIX) -> None:
        self._redis = redis_client
        self._clock = clock
        self._prefix = tagged_prefix(key_prefix)
        self._parked = f"{self._prefix}inbox:parked"
        self._alive_prefix = f"{self._prefix}inbox:alive:"
        self._adopt_script = redis_client.register_script(redis_scripts.ADOPT)

    def park(self, key: str, payload: str, replica: str) -> None:
        work = ParkedWork(key=key, payload=payload, replica=replica, parked_at=self._clock.now())
        with self._translating_errors():
            self._redis.hset(self._parked, key, work.model_dump_json())

    def unpark(self, key: str) -> None:
        with self._translating_errors():
            self._redis.hdel(self._parked, key)

    def heartbeat(self, replica: str, ttl: timedelta) -> None:
        with self._translating_errors():
            self._redis.set(self._alive_prefix + replica, self._clock.now().isoformat(), px=_milliseconds(ttl))

    def goodbye(self, replica: str) -> None:
        with self._translating_errors():
            self._redis.delete(self._alive_prefix + replica)

    def adopt(self, replica: str, limit: int = 100) -> Sequence[ParkedWork]:
        with self._translating_errors():
            records: Any = self._adopt_script(keys=[self._parked], args=[replica, limit, self._alive_prefix])
        return [ParkedWork.model_validate_json(record) for record in records]

    def parked(self) -> Sequence[ParkedWork]:
        """Everything parked, by any replica (for operators and tests)."""
        with self._translating_errors():
            records: Any = self._redis.hvals(self._parked)
        return sorted((ParkedWork.model_validate_json(r) for r in records), key=lambda work: work.parked_at)

    @contextmanager
    def _translating_errors(self) -> Iterator[None]:
        try:
            yield
        except (redis.RedisError, OSError) as exc:
            raise StoreUnavailable(f"inbox: {type(exc).__name__}: {exc}") from exc


def _milliseconds(duration: timedelta) -> int:
    return max(1, int(duration.total_seconds() * 1000))
