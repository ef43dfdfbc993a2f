"""`RedisIncidentGroupStore`: mass-failure groups in Redis, next to the incidents they speak for.

Keys, under the operation store's tagged prefix (one hash tag, so every script runs on Redis Cluster too):

    incident-group:{id}              the group, as pydantic JSON
    incident-group-latest:{channel}  → id of the channel's latest group (the one new incidents may join)
    incident-groups-live             set of ids: not resolved, or resolved with a card edit still pending
    incident-group-card:{id}         who is posting the summary card now (SET NX with a TTL)

Every write is one Lua script: the compare-and-set (on the channel's pointer for a new group, on `version`
otherwise), the live set and the expiry move together. A resolved group expires after the retention, with its
channel's pointer when that still names it; an unresolved one never expires.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import Any, Final

from bot.adapters.redis_connect import RedisClient
from bot.adapters.redis_incidents import _milliseconds, _text, _translating_errors
from bot.adapters.redis_store import DEFAULT_KEY_PREFIX, DEFAULT_RETENTION, tagged_prefix
from bot.core.catalog import ChannelId
from bot.core.errors import ConcurrentUpdate
from bot.core.incident_groups import GroupId, GroupState, IncidentGroup

# After the record is written: the live set, and the retention of a resolved group and its channel pointer.
_INDEXES: Final = """
if ARGV[4] == '1' then redis.call('SADD', KEYS[3], ARGV[2]) else redis.call('SREM', KEYS[3], ARGV[2]) end
if ARGV[3] == '1' then
  redis.call('PEXPIRE', KEYS[1], ARGV[5])
  if redis.call('GET', KEYS[2]) == ARGV[2] then redis.call('PEXPIRE', KEYS[2], ARGV[5]) end
else
  redis.call('PERSIST', KEYS[1])
  if redis.call('GET', KEYS[2]) == ARGV[2] then redis.call('PERSIST', KEYS[2]) end
end
return {'ok'}
"""

# KEYS: group, channel pointer, live.  ARGV: 1 record, 2 id, 3 resolved, 4 live, 5 retention ms, 6 replaces ('')
CREATE_GROUP: Final = (
    """
local latest = redis.call('GET', KEYS[2])
if (latest or '') ~= ARGV[6] then return {'conflict', latest or ''} end
if redis.call('EXISTS', KEYS[1]) == 1 then return {'conflict', ARGV[2]} end
redis.call('SET', KEYS[1], ARGV[1])
redis.call('SET', KEYS[2], ARGV[2])
"""
    + _INDEXES
)

# KEYS: group, channel pointer, live.  ARGV: 1 record, 2 id, 3 resolved, 4 live, 5 retention ms, 6 expected version
REPLACE_GROUP: Final = (
    """
local current = redis.call('GET', KEYS[1])
if not current then return {'missing'} end
local stored = cjson.decode(current)['version']
if stored ~= tonumber(ARGV[6]) then return {'conflict', tostring(stored)} end
redis.call('SET', KEYS[1], ARGV[1])
"""
    + _INDEXES
)


class RedisIncidentGroupStore:
    """The `IncidentGroupStore` port on Redis ≥ 7 (one server, Sentinel or Cluster). Thread-safe."""

    def __init__(
        self,
        redis_client: RedisClient,
        *,
        key_prefix: str = DEFAULT_KEY_PREFIX,
        retention: timedelta = DEFAULT_RETENTION,
    ) -> None:
        self._redis = redis_client
        self._prefix = tagged_prefix(key_prefix)
        self._retention = retention
        self._create = redis_client.register_script(CREATE_GROUP)
        self._replace = redis_client.register_script(REPLACE_GROUP)

    def create(self, group: IncidentGroup, *, replaces: GroupId | None) -> None:
        outcome, *rest = self._run(self._create, group, replaces or "")
        if outcome == "conflict":
            raise ConcurrentUpdate(f"channel {group.channel}'s latest group is now {rest[0] or 'none'}")

    def get(self, group_id: GroupId) -> IncidentGroup | None:
        with _translating_errors():
            record = self._redis.get(self._key("incident-group", group_id))
        return None if record is None else IncidentGroup.model_validate_json(record)

    def latest_in(self, channel: ChannelId) -> IncidentGroup | None:
        with _translating_errors():
            group_id = self._redis.get(self._key("incident-group-latest", channel))
        return None if group_id is None else self.get(GroupId(_text(group_id)))

    def replace(self, group: IncidentGroup, expected_version: int) -> None:
        if group.version != expected_version + 1:
            raise ValueError(f"group {group.id} must carry version {expected_version + 1}")
        outcome, *rest = self._run(self._replace, group, str(expected_version))
        if outcome == "missing":
            raise ConcurrentUpdate(f"group {group.id} does not exist")
        if outcome == "conflict":
            raise ConcurrentUpdate(f"group {group.id} is at version {rest[0]}, not {expected_version}")

    def live(self) -> Sequence[IncidentGroup]:
        with _translating_errors():
            ids = sorted(_text(i) for i in self._redis.smembers(self._key("incident-groups-live")))
            records = self._redis.mget([self._key("incident-group", i) for i in ids]) if ids else []
        return [IncidentGroup.model_validate_json(record) for record in records if record is not None]

    def claim_card(self, group_id: GroupId, holder: str, ttl: timedelta) -> bool:
        with _translating_errors():
            return bool(
                self._redis.set(self._key("incident-group-card", group_id), holder, nx=True, px=_milliseconds(ttl))
            )

    def _run(self, script: Any, group: IncidentGroup, last: str) -> list[str]:
        keys = [
            self._key("incident-group", group.id),
            self._key("incident-group-latest", group.channel),
            self._key("incident-groups-live"),
        ]
        is_resolved = group.state is GroupState.RESOLVED
        args = [
            group.model_dump_json(),
            group.id,
            "1" if is_resolved else "0",
            "0" if is_resolved and not group.is_card_stale else "1",
            str(_milliseconds(self._retention)),
            last,
        ]
        with _translating_errors():
            return [_text(part) for part in script(keys=keys, args=args)]

    def _key(self, *parts: str) -> str:
        return self._prefix + ":".join(parts)
