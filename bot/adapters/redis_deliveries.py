"""The webhooks' memory in Redis: one `SET NX PX` key per delivery handled or signature used.

Keys are `{prefix}delivery:{key}` and expire on their own; every replica shares them, so a redelivery to another
replica is recognised too. Redis errors become `StoreUnavailable` (the webhook answers 503 and the sender retries).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta

import redis

from bot.adapters.redis_connect import RedisClient
from bot.core.errors import StoreUnavailable


class RedisDeliveryLedger:
    """`ports.DeliveryLedger` on Redis."""

    def __init__(self, client: RedisClient, *, key_prefix: str = "rollbot:") -> None:
        self._client = client
        self._prefix = f"{key_prefix}delivery:"

    def claim(self, key: str, ttl: timedelta) -> bool:
        with _translating_errors():
            milliseconds = max(1, int(ttl.total_seconds() * 1000))
            return bool(self._client.set(self._prefix + key, "1", nx=True, px=milliseconds))

    def release(self, key: str) -> None:
        with _translating_errors():
            self._client.delete(self._prefix + key)


@contextmanager
def _translating_errors() -> Iterator[None]:
    try:
        yield
    except (redis.RedisError, OSError) as exc:
        raise StoreUnavailable(f"delivery ledger: {type(exc).__name__}: {exc}") from exc
