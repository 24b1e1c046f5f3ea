"""The Redis store's Lua scripts: every step that must be atomic on the server.

Each script checks and writes in one step however many processes race (see
``redis.py`` for the design). They touch only the keys they are given, all of one
run, plus, on a standalone server, the wake streams of other processes (which a
standalone server allows). The cluster's variant touches only the keys it is
given, all in the run's slot: it wakes other processes by ``PUBLISH`` on their
wake channels, which names no key.
"""

from __future__ import annotations

import threading
from typing import Any

from glide import Script

__all__ = (
    "ALL_TAKEN",
    "APPENDED",
    "CLOSED",
    "FOREIGN",
    "GAP",
    "HELD",
    "LOST",
    "NOTHING",
    "READ_BYTES",
    "READ_COUNT",
    "TAKEN",
    "WAKE_COUNT",
    "WATCH_TTL_MS",
    "Scripts",
)

#: Most entries (batches) one read returns, and the size at which it stops adding
#: more: a reader's memory stays bounded when batches are large.
READ_COUNT = 512
READ_BYTES = 8 * 1024 * 1024
#: How long a blocked reader's registration in a stream's watchers hash lasts.
WATCH_TTL_MS = 30_000
#: Entries a wake stream keeps, and most one XREAD returns: a reply this long may
#: have lost older entries, so it wakes every reader of the loop.
WAKE_COUNT = 64
#: How long a process's wake stream outlives its last use (it is tiny).
WAKE_TTL_MS = 3_600_000

# Shared by the scripts below. KEYS[1] is always the key the script is about and
# KEYS[2] (when used) the run's key set.
_LUA_LIB = """
local function id_position(id)
  -- The position an entry id stands for: its milliseconds part.
  return tonumber(string.sub(id, 1, string.find(id, '-', 1, true) - 1))
end

local function last_entry(key)
  -- Length of the stream at key, whether it has ended, and the end's error.
  local last = redis.call('XREVRANGE', key, '+', '-', 'COUNT', 1)
  if #last == 0 then
    -- No stream, or one that trim emptied. Trim keeps the end marker, so such a
    -- stream has not ended, and it still knows the id of its last entry.
    if redis.call('EXISTS', key) == 0 then return 0, false, nil end
    local info = redis.call('XINFO', 'STREAM', key)
    for i = 1, #info, 2 do
      if info[i] == 'last-generated-id' then
        return id_position(info[i + 1]), false, nil
      end
    end
    return 0, false, nil
  end
  local id = last[1][1]
  local dash = string.find(id, '-', 1, true)
  local length = tonumber(string.sub(id, 1, dash - 1))
  if string.sub(id, dash + 1) == '0' then return length, false, nil end
  local fields = last[1][2]
  for i = 1, #fields, 2 do
    if fields[i] == 'error' then return length, true, fields[i + 1] end
  end
  return length, true, nil
end

local function entry_kind(entry)
  -- 'd' for a batch of values (fields n <count> d <data>, id <end>-0), 'b' for
  -- a large batch kept in a key of its own (n <count> b <key>), 'e' for the end
  -- marker (fields end 1 [error <e>], id <length>-<n>, n >= 1: a resumed run
  -- that reopened the stream ends it again at the next n), else nil: an entry that
  -- Datagraph did not write.
  local id, f = entry[1], entry[2]
  local seq = string.sub(id, string.find(id, '-', 1, true) + 1)
  if seq == '0' and #f == 4 and f[1] == 'n' then
    if f[3] == 'd' then return 'd' end
    if f[3] == 'b' then return 'b' end
  end
  if seq ~= '0' and f[1] == 'end'
      and (#f == 2 or (#f == 4 and f[3] == 'error')) then
    return 'e'
  end
  return nil
end

local function field_names(entry)
  local names = {}
  for i = 1, #entry[2], 2 do names[#names + 1] = tostring(entry[2][i]) end
  return string.sub(table.concat(names, ','), 1, 200)
end

local function touch(key, ttl)
  -- Refresh the expiry of key and of the run's key set, listing key in it.
  -- Returns 1 when the run had no key set: the caller then indexes the run.
  local fresh = 1 - redis.call('EXISTS', KEYS[2])
  redis.call('SADD', KEYS[2], key)
  redis.call('PEXPIRE', KEYS[2], ttl)
  redis.call('PEXPIRE', key, ttl)
  return fresh
end

local function add_batch(id, count, data, blobs, blob, ttl)
  -- Append a batch entry; with a blob key, its data was SET there beforehand
  -- and the entry names it (the blobs sorted set finds it again by position).
  if blob then
    redis.call('XADD', KEYS[1], id, 'n', count, 'b', blob)
    redis.call('ZADD', blobs, id_position(id), blob)
    touch(blobs, ttl)
    touch(blob, ttl)
  else
    redis.call('XADD', KEYS[1], id, 'n', count, 'd', data)
  end
end

local function drop_blob(blobs, blob)
  -- Delete a blob SET for a batch that was not appended (unless an earlier
  -- attempt of the same call appended it after all).
  if blob and not redis.call('ZSCORE', blobs, blob) then
    redis.call('DEL', blob)
  end
end

local function forget(tokens, first)
  -- Drop the records of the calls named in ARGV[first..]: their answers arrived.
  if #ARGV >= first then redis.call('HDEL', tokens, unpack(ARGV, first)) end
end

local function record(tokens, token, value, ttl)
  -- Keep what the call token did, as long as the run (in its key set).
  if redis.call('HSET', tokens, token, value) == 1
      and redis.call('HLEN', tokens) == 1 then
    touch(tokens, ttl)
  else
    redis.call('PEXPIRE', tokens, ttl)
  end
end

local function server_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

local function watch(watchers, wake)
  -- Register the wake stream of a reader about to wait, for a while.
  if wake == '' then return end
  redis.call('HSET', watchers, wake, string.format('%d', server_ms() + $WATCH_TTL))
  redis.call('PEXPIRE', watchers, '$WATCH_TTL')
end

local function notify(watchers, own)
  -- Tell each other process registered in watchers that KEYS[1] changed; the
  -- writer's own process (wake stream own) wakes its readers itself.
  local found = redis.call('HGETALL', watchers)
  if #found == 0 then return end
  local now = server_ms()
  for i = 1, #found, 2 do
    local wake = found[i]
    if tonumber(found[i + 1]) < now then
      redis.call('HDEL', watchers, wake)
    elseif wake ~= own then
      $NOTIFY_WAKE
    end
  end
end
"""
#: How notify wakes another process: an entry in its wake stream (standalone).
_WAKE_STREAM = """redis.call('XADD', wake, 'MAXLEN', '$WAKE_COUNT', '*', 'k', KEYS[1])
      redis.call('PEXPIRE', wake, '$WAKE_TTL')"""
#: On a cluster, a message on its wake channel: PUBLISH names no key, so the
#: script stays in the run's slot (the cluster bus carries it to every node).
_WAKE_CHANNEL = "redis.call('PUBLISH', wake, KEYS[1])"


def _lib(wake: str) -> str:
    return (
        _LUA_LIB.replace("$NOTIFY_WAKE", wake)
        .replace("$WAKE_COUNT", str(WAKE_COUNT))
        .replace("$WAKE_TTL", str(WAKE_TTL_MS))
        .replace("$WATCH_TTL", str(WATCH_TTL_MS))
    )


# KEYS: the stream, the run's key set, the stream's watchers, its cursors, its
# blobs, and for a large batch the blob key its data was SET in. ARGV:
# start, stop (= start + count), count, data ('' if in a blob), ttl_ms, the
# writer's wake stream,
# then the readers of the writer's event loop blocked right at start: they are
# handed the batch there, so their cursors move past it here.
# Returns {status, length, fresh}; status 0 written, 1 already held, 2 ended, 3 gap.
_APPEND_LUA = (
    "$LIB"
    + """
local length, ended = last_entry(KEYS[1])
local start, stop = tonumber(ARGV[1]), tonumber(ARGV[2])
local status = nil
if stop <= length or (start < length and not ended) then status = 1
elseif ended then status = 2
elseif start > length then status = 3 end
if status then
  drop_blob(KEYS[5], KEYS[6])
  return {status, length, 0}
end
add_batch(ARGV[2] .. '-0', ARGV[3], ARGV[4], KEYS[5], KEYS[6], ARGV[5])
notify(KEYS[3], ARGV[6])
local fresh = touch(KEYS[1], ARGV[5])
if #ARGV > 6 then
  for i = 7, #ARGV do
    local old = redis.call('HGET', KEYS[4], ARGV[i])
    if not old or tonumber(old) < stop then
      redis.call('HSET', KEYS[4], ARGV[i], ARGV[2])
    end
  end
  touch(KEYS[4], ARGV[5])
end
return {0, stop, fresh}
"""
)

# KEYS as for append. ARGV: ttl_ms, has_error ('0'/'1'), error, the writer's wake
# stream. Returns {ended_now, length, fresh}.
_END_LUA = (
    "$LIB"
    + """
local length, ended = last_entry(KEYS[1])
if ended then return {0, length, 0} end
-- The marker takes the stream's length and the next free sequence number
-- (1, or more once a resumed run reopened the stream and ends it again).
local id = string.format('%d-*', length)
if ARGV[2] == '1' then
  redis.call('XADD', KEYS[1], id, 'end', '1', 'error', ARGV[3])
else
  redis.call('XADD', KEYS[1], id, 'end', '1')
end
notify(KEYS[3], ARGV[4])
return {1, length, touch(KEYS[1], ARGV[1])}
"""
)

# KEYS: the stream, the run's key set, its watchers. ARGV: ttl_ms, the writer's
# wake stream. Deletes the end marker; the stream keeps its length (its last id
# stays that of the marker). Returns 1 if the stream had ended, else 0.
_REOPEN_LUA = (
    "$LIB"
    + """
local last = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)
if #last == 0 then return 0 end
local id = last[1][1]
if string.sub(id, string.find(id, '-', 1, true) + 1) == '0' then return 0 end
redis.call('XDEL', KEYS[1], id)
notify(KEYS[3], ARGV[2])
touch(KEYS[1], ARGV[1])
return 1
"""
)

# KEYS: the stream, the run's key set, its watchers, its tokens, its blobs, and
# for a large batch its blob key (as for append). ARGV: count, data, ttl_ms,
# the writer's wake stream, this call's token, then tokens of earlier calls
# whose answers arrived (forgotten here). Returns {status, length
# (= the batch's start), fresh}; status 0 written (or nothing to write), 2 ended.
# The token makes a retried call exact: an attempt that wrote the batch but whose
# answer was lost left its start under the token, and the retry returns that.
_APPEND_AT_END_LUA = (
    "$LIB"
    + """
local seen = redis.call('HGET', KEYS[4], ARGV[5])
if seen then return {0, tonumber(string.sub(seen, 3)), 0} end
forget(KEYS[4], 6)
local length, ended = last_entry(KEYS[1])
local count = tonumber(ARGV[1])
if ended or count == 0 then
  drop_blob(KEYS[5], KEYS[6])
  return {ended and 2 or 0, length, 0}
end
add_batch(string.format('%d-0', length + count), ARGV[1], ARGV[2], KEYS[5],
          KEYS[6], ARGV[3])
record(KEYS[4], ARGV[5], string.format('a %d', length), ARGV[3])
notify(KEYS[3], ARGV[4])
return {0, length, touch(KEYS[1], ARGV[3])}
"""
)

# KEYS: the stream, the run's key set, the stream's cursors, its watchers. ARGV:
# position, ttl_ms, wake stream ('' for none), and with a reader its name. Returns
# {fresh, ...}: fresh is 1 when recording the cursor started the run's key set.
# The rest is a flat list of triples {id, count, data} in order, where an end
# marker has count -1 (no error, data '') or -2 (data = the error). With nothing
# past the position, the rest is the end marker triple if the stream has ended,
# else {length}; then the wake stream, if given, is registered among the watchers:
# the reader is about to wait. Reads stop after $READ_COUNT entries or once they
# hold $READ_BYTES bytes. A large batch kept in a blob comes as {id, count,
# {blob key}} and ends the reply: the caller fetches it on a connection of its
# own. An entry Datagraph did not write comes as {id, -9, its field names} and
# ends the reply too.
_READ_LUA = (
    (
        "$LIB"
        + """
local fresh = 0
if ARGV[4] then
  -- Record the reader's cursor, only ever moving it forward.
  local old = redis.call('HGET', KEYS[3], ARGV[4])
  if not old or tonumber(old) < tonumber(ARGV[1]) then
    redis.call('HSET', KEYS[3], ARGV[4], ARGV[1])
    fresh = touch(KEYS[3], ARGV[2])
  end
end
local cursor = '(' .. ARGV[1] .. '-0'
local max_count, max_bytes = $READ_COUNT, $READ_BYTES
local out, n, size = {fresh}, 0, 0
while n < max_count and size < max_bytes do
  local want = math.min(max_count - n, 64)
  local entries = redis.call('XRANGE', KEYS[1], cursor, '+', 'COUNT', want)
  local stop = false
  for _, entry in ipairs(entries) do
    local f, kind = entry[2], entry_kind(entry)
    out[#out + 1] = entry[1]
    if kind == 'd' then
      out[#out + 1] = f[2]
      out[#out + 1] = f[4]
      size = size + #f[4]
    elseif kind == 'b' then
      out[#out + 1] = f[2]
      out[#out + 1] = {f[4]}
      stop = true
    elseif kind == 'e' then
      out[#out + 1] = #f == 4 and -2 or -1
      out[#out + 1] = #f == 4 and f[4] or ''
    else
      out[#out + 1] = -9
      out[#out + 1] = field_names(entry)
      stop = true
    end
    n = n + 1
    cursor = '(' .. entry[1]
    if stop or size >= max_bytes then break end
  end
  if stop or #entries < want then break end
end
if n > 0 then return out end
local length, ended, err = last_entry(KEYS[1])
if not ended then
  watch(KEYS[4], ARGV[3])
  return {fresh, length}
end
if err then return {fresh, string.format('%d-1', length), -2, err} end
return {fresh, string.format('%d-1', length), -1, ''}
"""
    )
    .replace("$READ_COUNT", str(READ_COUNT))
    .replace("$READ_BYTES", str(READ_BYTES))
)

# KEYS: the stream, the run's key set, the stream's cursors, its watchers, its
# tokens. ARGV: group, max_count, ttl_ms, wake stream ('' for none), this call's
# token, then tokens of earlier calls whose answers arrived (forgotten here). The
# group's cursor is the position of its next value; the entry after it holds that
# value (or, its positions trimmed, the next one held). Returns one of
#   {0, cursor, length}                       nothing to take yet (the wake
#                                             stream, if given, now watches)
#   {1, start, stop, entry end, count, data, fresh}   positions start..stop-1 taken
#                                             (data {blob key}: a large batch)
#   {2, cursor, length, has_error, error}    the stream ended, the group took all
#   {3, entry id, field names}               the next entry is not Datagraph's
#   {4, start, stop}                         a retry, but the entry is gone
# A share handed out is kept under the token (``t <start> <stop> <end>``) until
# a later call says its answer arrived, so a retry of a call whose answer was
# lost gets the same share, and trim keeps the entry meanwhile.
_TAKE_LUA = (
    "$LIB"
    + """
local function share(start, taken, stop, entry, fresh)
  local f = entry[2]
  local data = f[4]
  if f[3] == 'b' then data = {data} end
  return {1, start, taken, stop, tonumber(f[2]), data, fresh}
end
local seen = redis.call('HGET', KEYS[5], ARGV[5])
if seen then
  local start, taken, stop = string.match(seen, 't (%d+) (%d+) (%d+)')
  local again = redis.call('XRANGE', KEYS[1], stop .. '-0', stop .. '-0')
  if #again == 0 then return {4, tonumber(start), tonumber(taken)} end
  return share(tonumber(start), tonumber(taken), tonumber(stop), again[1], 0)
end
forget(KEYS[5], 6)
local cursor = tonumber(redis.call('HGET', KEYS[3], ARGV[1]) or '0')
local entries = redis.call('XRANGE', KEYS[1], string.format('(%d-0', cursor), '+',
                           'COUNT', 1)
if #entries == 0 then
  watch(KEYS[4], ARGV[4])
  return {0, cursor, (last_entry(KEYS[1]))}
end
local id, f = entries[1][1], entries[1][2]
local kind = entry_kind(entries[1])
local count = kind ~= 'e' and tonumber(f[2]) or nil
if kind == nil or (kind ~= 'e' and not count) then
  return {3, id, field_names(entries[1])}
end
local stop = id_position(id)
if kind == 'e' then
  if #f == 4 then return {2, cursor, stop, 1, f[4]} end
  return {2, cursor, stop, 0, ''}
end
local start = math.max(cursor, stop - count)
local taken = math.min(stop, start + tonumber(ARGV[2]))
redis.call('HSET', KEYS[3], ARGV[1], string.format('%d', taken))
record(KEYS[5], ARGV[5], string.format('t %d %d %d', start, taken, stop), ARGV[3])
return share(start, taken, stop, entries[1], touch(KEYS[3], ARGV[3]))
"""
)

# KEYS: the stream, its tokens, its blobs. ARGV: before, then tokens of calls
# whose answers arrived (forgotten first). Drops the entries whose values all
# lie before it (and forgets the blobs of those entries),
# never the end marker (it holds the length and the error), nor an entry holding
# a share of ``take`` whose answer may have been lost (a retry hands it out
# again). Returns {how many were dropped, the keys of the blobs forgotten}: the
# caller deletes those, as a script deletes only keys it was given.
_TRIM_LUA = (
    "$LIB"
    + """
local before = tonumber(ARGV[1])
forget(KEYS[2], 2)
for _, record in ipairs(redis.call('HVALS', KEYS[2])) do
  local start = string.match(record, '^t (%d+)')
  if start then before = math.min(before, tonumber(start)) end
end
local length, ended = last_entry(KEYS[1])
local min_id = string.format('%d-0', before + 1)
if ended and before >= length then
  min_id = string.format('%d-1', length)
  before = length
end
local gone = redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', before)
if #gone > 0 then redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', before) end
return {redis.call('XTRIM', KEYS[1], 'MINID', min_id), unpack(gone)}
"""
)

# Returns {length, ended} or {length, ended, error}.
_STATE_LUA = (
    "$LIB"
    + """
local length, ended, err = last_entry(KEYS[1])
if err then return {length, 1, err} end
return {length, ended and 1 or 0}
"""
)

# ARGV: ttl_ms, name1, value1, name2, value2, ... Returns fresh.
_SET_FIELDS_LUA = (
    "$LIB"
    + """
for i = 2, #ARGV, 2 do redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end
return touch(KEYS[1], ARGV[1])
"""
)

# ARGV: ttl_ms, name, this call's token. Returns {won, fresh}. The claim holds the
# winner's token, so a retried call whose first answer was lost still wins.
_CLAIM_LUA = (
    "$LIB"
    + """
local won = redis.call('HSETNX', KEYS[1], ARGV[2], ARGV[3])
if won == 0 and redis.call('HGET', KEYS[1], ARGV[2]) == ARGV[3] then won = 1 end
return {won, touch(KEYS[1], ARGV[1])}
"""
)

APPENDED, HELD, CLOSED, GAP = 0, 1, 2, 3
NOTHING, TAKEN, ALL_TAKEN, FOREIGN, LOST = 0, 1, 2, 3, 4


class Scripts:
    """The Lua scripts, registered with glide when first needed.

    Args:
        cluster: the variant for a Redis Cluster (wakes by PUBLISH, see ``notify``).
    """

    _lock = threading.Lock()
    _loaded: dict[bool, Scripts] = {}  # noqa: RUF012  # guarded by _lock

    def __init__(self, *, cluster: bool = False) -> None:
        lib = _lib(_WAKE_CHANNEL if cluster else _WAKE_STREAM)

        def _script(code: str) -> Any:
            # glide leaves Script untyped
            return Script(code.replace("$LIB", lib, 1))  # type: ignore[no-untyped-call]

        self.append = _script(_APPEND_LUA)
        self.end_stream = _script(_END_LUA)
        self.reopen = _script(_REOPEN_LUA)
        self.read = _script(_READ_LUA)
        self.append_at_end = _script(_APPEND_AT_END_LUA)
        self.take = _script(_TAKE_LUA)
        self.trim = _script(_TRIM_LUA)
        self.state = _script(_STATE_LUA)
        self.set_fields = _script(_SET_FIELDS_LUA)
        self.claim = _script(_CLAIM_LUA)

    @classmethod
    def get(cls, *, cluster: bool = False) -> Scripts:
        """Return the process's one set of scripts of a kind (cluster or not)."""
        with cls._lock:
            found = cls._loaded.get(cluster)
            if found is None:
                found = cls._loaded[cluster] = cls(cluster=cluster)
            return found
