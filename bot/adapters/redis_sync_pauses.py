"""Reconcilers rollbot paused, in Redis: one hash `{prefix}sync-pauses`, field = reconciler key, value = JSON.

A pause outlives the rollback that made it (operations expire after the retention; a pause stays until someone
resumes the sync), and every replica reads the same records for `/rollback status`, `resume-sync` and the
reminders. Redis errors become `StoreUnavailable`.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import redis
from pydantic import ValidationError

from bot.adapters.redis_connect import RedisClient
from bot.core.errors import StoreUnavailable
from bot.core.gitops import SyncPause


class RedisSyncPauses:
    """`ports.SyncPauses` on Redis."""

    def __init__(self, client: RedisClient, *, key_prefix: str = "rollbot:") -> None:
        self._client = client
        self._key = f"{key_prefix}sync-pauses"

    def put(self, pause: SyncPause) -> None:
        with _translating_errors():
            self._client.hset(self._key, pause.ref.key, pause.model_dump_json())

    def get(self, reconciler_key: str) -> SyncPause | None:
        with _translating_errors():
            raw = self._client.hget(self._key, reconciler_key)
        return None if raw is None else _parse(raw)

    def all(self) -> Sequence[SyncPause]:
        with _translating_errors():
            raw = self._client.hgetall(self._key)
        found = (_parse(value) for value in raw.values())
        return sorted((pause for pause in found if pause is not None), key=lambda pause: pause.paused_at)

    def remove(self, reconciler_key: str) -> None:
        with _translating_errors():
            self._client.hdel(self._key, reconciler_key)


def _parse(raw: object) -> SyncPause | None:
    try:
        return SyncPause.model_validate_json(raw if isinstance(raw, str | bytes) else str(raw))
    except ValidationError:
        return None  # a record an older version wrote: never let it break status or the sweep


@contextmanager
def _translating_errors() -> Iterator[None]:
    try:
        yield
    except (redis.RedisError, OSError) as exc:
        raise StoreUnavailable(f"sync pauses: {type(exc).__name__}: {exc}") from exc
