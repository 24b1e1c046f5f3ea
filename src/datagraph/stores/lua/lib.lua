-- Shared by every script of the Redis store: the loader puts it before each one.
-- KEYS[1] is always the key the script is about and KEYS[2] (when used) the run's
-- key set. The loader (datagraph/stores/_redis_scripts.py) fills the placeholders
-- (a dollar sign and a capitalised name) when it is imported.

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
  redis.call('HSET', watchers, wake, string.format('%d', server_ms() + $WATCH_TTL_MS))
  redis.call('PEXPIRE', watchers, '$WATCH_TTL_MS')
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
