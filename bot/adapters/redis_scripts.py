"""The Lua scripts of the Redis operation store and inbox: every write is one script, atomic in one round trip.

Each script's KEYS and ARGV are listed above it. Every key a script touches carries the store's hash tag, so in
Redis Cluster all of them live in one slot and a script may run there; the few keys that can only be named
inside a script (a replica's heartbeat, the message links of an operation) are built from the tagged prefix
passed in ARGV, which keeps them in that slot too.

Replies are tables whose first element says the outcome (`ok`, `busy`, `fenced`, …); the Python side turns
them into results or `bot.core.errors`.
"""

from __future__ import annotations

from typing import Final

# Shared by the write scripts.
# has_write: was the write with this id already applied (a resent script after a lost reply)?
# append_audit: one entry in the capped global stream and in the operation's own stream.
# expire_finished: a finished operation's record, audit trail and message links go after `retention`.
_LUA_HELPERS: Final = """
local function has_write(stream, write_id)
  for _, entry in ipairs(redis.call('XRANGE', stream, '-', '+')) do
    local fields = entry[2]
    for i = 1, #fields, 2 do
      if fields[i] == 'write' and fields[i + 1] == write_id then return true end
    end
  end
  return false
end
local function append_audit(global_stream, own_stream, audit_max, first)
  local fields = {}
  for i = first, #ARGV do fields[#fields + 1] = ARGV[i] end
  redis.call('XADD', global_stream, 'MAXLEN', '~', audit_max, '*', unpack(fields))
  redis.call('XADD', own_stream, '*', unpack(fields))
end
local function expire_finished(op_key, own_stream, links_key, retention_ms)
  redis.call('PEXPIRE', op_key, retention_ms)
  redis.call('PEXPIRE', own_stream, retention_ms)
  for _, link in ipairs(redis.call('SMEMBERS', links_key)) do redis.call('PEXPIRE', link, retention_ms) end
  redis.call('PEXPIRE', links_key, retention_ms)
end
"""

# KEYS: op, in-flight, audit, audit:{id}, links:{id}, then one lock per target (a batch has several)
# ARGV: record, write id, takes locks (1/0), lock json, ttl ms, op id, score, terminal (1/0), retention ms,
#       audit max, audit fields…
# All locks are taken together or none: a busy one is reported as {'busy', index among the locks, its json, …}.
CREATE: Final = (
    _LUA_HELPERS
    + """
if redis.call('EXISTS', KEYS[1]) == 1 then
  if has_write(KEYS[4], ARGV[2]) then return {'ok'} end
  return {'duplicate'}
end
if ARGV[3] == '1' then
  local busy = {}
  for i = 6, #KEYS do
    local held = redis.call('GET', KEYS[i])
    if held then
      busy[#busy + 1] = tostring(i - 5)
      busy[#busy + 1] = held
    end
  end
  if #busy > 0 then return {'busy', unpack(busy)} end
  for i = 6, #KEYS do redis.call('SET', KEYS[i], ARGV[4], 'PX', ARGV[5]) end
  redis.call('ZADD', KEYS[2], ARGV[7], ARGV[6])
end
redis.call('SET', KEYS[1], ARGV[1])
append_audit(KEYS[3], KEYS[4], ARGV[10], 11)
if ARGV[8] == '1' then expire_finished(KEYS[1], KEYS[4], KEYS[5], ARGV[9]) end
return {'ok'}
"""
)

# KEYS: op, in-flight, audit, audit:{id}, links:{id}, then one lock per target (a batch has several)
# ARGV: 1 record, 2 write id, 3 expected version, 4 in flight (1/0), 5 terminal (1/0), 6 op id, 7 score,
#       8 writer's fence ('' when none), 9 new record's fence, 10 lock json, 11 lock ttl ms ('' when none),
#       12 default lock ttl ms, 13 retention ms, 14 audit max, audit fields…
REPLACE: Final = (
    _LUA_HELPERS
    + """
local current = redis.call('GET', KEYS[1])
if not current then return {'missing'} end
local stored = cjson.decode(current)
local stored_fence = tonumber(stored['fence']) or 0
if ARGV[8] ~= '' and stored_fence ~= tonumber(ARGV[8]) then
  if has_write(KEYS[4], ARGV[2]) then return {'ok'} end
  return {'fenced', tostring(stored_fence)}
end
if stored['version'] ~= tonumber(ARGV[3]) then
  if has_write(KEYS[4], ARGV[2]) then return {'ok'} end
  return {'conflict', tostring(stored['version'])}
end
local new_fence = tonumber(ARGV[9])
if new_fence < stored_fence then return {'fenced', tostring(stored_fence)} end
if new_fence > stored_fence + 1 then return {'fence-jump', tostring(stored_fence)} end
if ARGV[4] == '1' then
  for i = 6, #KEYS do
    local lock = redis.call('GET', KEYS[i])
    if lock and cjson.decode(lock)['operation_id'] ~= ARGV[6] then return {'busy', tostring(i - 5), lock} end
  end
  for i = 6, #KEYS do
    if redis.call('EXISTS', KEYS[i]) == 0 then
      local ttl = ARGV[11] ~= '' and ARGV[11] or ARGV[12]
      redis.call('SET', KEYS[i], ARGV[10], 'PX', ttl)
    elseif ARGV[11] ~= '' then
      redis.call('PEXPIRE', KEYS[i], ARGV[11])
    end
  end
end
redis.call('SET', KEYS[1], ARGV[1])
if ARGV[4] == '1' then
  redis.call('ZADD', KEYS[2], ARGV[7], ARGV[6])
else
  redis.call('ZREM', KEYS[2], ARGV[6])
end
if ARGV[5] == '1' then
  for i = 6, #KEYS do
    local lock = redis.call('GET', KEYS[i])
    if lock and cjson.decode(lock)['operation_id'] == ARGV[6] then redis.call('DEL', KEYS[i]) end
  end
end
append_audit(KEYS[3], KEYS[4], ARGV[14], 15)
if ARGV[5] == '1' then expire_finished(KEYS[1], KEYS[4], KEYS[5], ARGV[13]) end
return {'ok'}
"""
)

# KEYS: op, then one lock per target.  ARGV: op id, ttl ms, lock json (to take one again after expiry),
#       fence ('' when none), in-flight phases…
# Every lock is checked before any is touched: one held by another operation refreshes none.
REFRESH: Final = """
local current = redis.call('GET', KEYS[1])
if not current then return {'idle'} end
local stored = cjson.decode(current)
local stored_fence = tonumber(stored['fence']) or 0
if ARGV[4] ~= '' and stored_fence ~= tonumber(ARGV[4]) then return {'fenced', tostring(stored_fence)} end
local in_flight = false
for i = 5, #ARGV do if ARGV[i] == stored['phase'] then in_flight = true end end
if not in_flight then return {'idle'} end
for i = 2, #KEYS do
  local lock = redis.call('GET', KEYS[i])
  if lock and cjson.decode(lock)['operation_id'] ~= ARGV[1] then return {'busy', tostring(i - 1), lock} end
end
for i = 2, #KEYS do
  if redis.call('EXISTS', KEYS[i]) == 0 then
    redis.call('SET', KEYS[i], ARGV[3], 'PX', ARGV[2])
  else
    redis.call('PEXPIRE', KEYS[i], ARGV[2])
  end
end
return {'refreshed'}
"""

# KEYS: op-by-msg:{channel}:{ts}, links:{id}, op:{id}.  ARGV: op id.
# A message linked to an operation that already finished expires with it.
LINK_MESSAGE: Final = """
redis.call('SET', KEYS[1], ARGV[1])
redis.call('SADD', KEYS[2], KEYS[1])
local remaining = redis.call('PTTL', KEYS[3])
if remaining > 0 then
  redis.call('PEXPIRE', KEYS[1], remaining)
  redis.call('PEXPIRE', KEYS[2], remaining)
end
return 1
"""

# KEYS: seen:{key}.  ARGV: token, ttl ms. The token makes a resent command after a lost reply still say "first".
FIRST_DELIVERY: Final = """
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return 1 end
if redis.call('GET', KEYS[1]) == ARGV[1] then return 1 end
return 0
"""

# KEYS: inbox:parked (hash key → ParkedWork JSON).
# ARGV: adopting replica, limit, heartbeat key prefix (the tagged `inbox:alive:`, + replica = its key).
# An adopted record is rewritten with the adopter as its `replica`, so nobody else adopts it while it lives.
# Work whose replica still has a heartbeat key, and the adopter's own work, stay where they are.
ADOPT: Final = """
local adopted = {}
local entries = redis.call('HGETALL', KEYS[1])
for i = 1, #entries, 2 do
  if #adopted >= tonumber(ARGV[2]) then break end
  local item = cjson.decode(entries[i + 1])
  if item['replica'] ~= ARGV[1] and redis.call('EXISTS', ARGV[3] .. item['replica']) == 0 then
    item['replica'] = ARGV[1]
    local record = cjson.encode(item)
    redis.call('HSET', KEYS[1], entries[i], record)
    adopted[#adopted + 1] = record
  end
end
return adopted
"""
