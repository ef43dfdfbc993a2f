"""`RedisAutoLedgers`: the automatic-rollback ledger of each context, and the policy's audit entries, in Redis.

Keys, under the operation store's tagged prefix (one hash tag, so the script runs on Redis Cluster too):

    auto-ledger:{context}    the context's `AutoLedger` as pydantic JSON (starts within the windows, breaker)
    auto-contexts            set of the contexts that have a ledger (for `/rollback auto status`)
    audit                    the audit stream every operation write goes to; policy decisions are added to it

A ledger write is one Lua script: compare-and-set on `version`, then the index.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Final

import redis

from bot.adapters.redis_connect import RedisClient
from bot.adapters.redis_store import DEFAULT_AUDIT_MAX, DEFAULT_KEY_PREFIX, tagged_prefix
from bot.core.auto_policy import AutoLedger
from bot.core.errors import ConcurrentUpdate, StoreUnavailable

# KEYS: ledger, contexts.  ARGV: record, expected version, context.
REPLACE_LEDGER: Final = """
local current = redis.call('GET', KEYS[1])
local stored = 0
if current then stored = cjson.decode(current)['version'] end
if stored ~= tonumber(ARGV[2]) then return {'conflict', tostring(stored)} end
redis.call('SET', KEYS[1], ARGV[1])
redis.call('SADD', KEYS[2], ARGV[3])
return {'ok'}
"""


class RedisAutoLedgers:
    """`ports.AutoLedgers` on Redis ≥ 7. Thread-safe, as redis-py is."""

    def __init__(
        self,
        client: RedisClient,
        *,
        key_prefix: str = DEFAULT_KEY_PREFIX,
        audit_max: int = DEFAULT_AUDIT_MAX,
    ) -> None:
        self._redis = client
        self._prefix = tagged_prefix(key_prefix)
        self._audit_max = audit_max
        self._replace = client.register_script(REPLACE_LEDGER)

    def get(self, context: str) -> AutoLedger:
        with _translating_errors():
            record = self._redis.get(self._key("auto-ledger", context))
        return AutoLedger(context=context) if record is None else AutoLedger.model_validate_json(record)

    def replace(self, ledger: AutoLedger, expected_version: int) -> None:
        keys = [self._key("auto-ledger", ledger.context), self._key("auto-contexts")]
        with _translating_errors():
            reply = self._replace(keys=keys, args=[ledger.model_dump_json(), expected_version, ledger.context])
        outcome, *rest = (_text(part) for part in reply)
        if outcome == "conflict":
            raise ConcurrentUpdate(f"auto ledger {ledger.context}: version {rest[0]}, not {expected_version}")

    def contexts(self) -> Sequence[str]:
        with _translating_errors():
            members = self._redis.smembers(self._key("auto-contexts"))
        return sorted(_text(member) for member in members or ())

    def audit(self, event: str, fields: Mapping[str, str]) -> None:
        entry = {"event": event, **fields}
        with _translating_errors():
            self._redis.xadd(self._key("audit"), entry, maxlen=self._audit_max, approximate=True)  # type: ignore[arg-type]

    def _key(self, *parts: str) -> str:
        return self._prefix + ":".join(parts)


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


@contextmanager
def _translating_errors() -> Iterator[None]:
    try:
        yield
    except (redis.RedisError, OSError) as exc:
        raise StoreUnavailable(f"auto-rollback ledger: {type(exc).__name__}: {exc}") from exc
