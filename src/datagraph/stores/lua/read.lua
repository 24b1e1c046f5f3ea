-- Read the entries past a position, recording the reader's cursor (RedisStore.read).
-- KEYS: the stream, the run's key set, the stream's cursors, its watchers.
-- ARGV: position, ttl_ms, wake stream ('' for none), and with a reader its name.
-- Returns one of
--   {$READ_ENTRIES, fresh, id, count, data, id, count, data, ...}
--   {$READ_WAITING, fresh, length}   nothing past the position, and the stream has
--                                    not ended: the wake stream, if given, now
--                                    watches it (the reader is about to wait)
-- fresh is 1 when recording the cursor started the run's key set. Entries come
-- in order as triples; an end marker has count $ENTRY_END (data '') or
-- $ENTRY_FAILED_END (data = the error); with nothing past the position, a stream
-- that has ended gives its end marker alone. Reads stop after $READ_COUNT entries
-- or once they hold $READ_BYTES bytes. A large batch kept in a blob comes as
-- {id, count, {blob key}} and ends the reply: the caller fetches it on a
-- connection of its own. An entry Datagraph did not write comes as
-- {id, $ENTRY_FOREIGN, its field names} and ends the reply too.
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
local out, n, size = {$READ_ENTRIES, fresh}, 0, 0
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
      out[#out + 1] = #f == 4 and $ENTRY_FAILED_END or $ENTRY_END
      out[#out + 1] = #f == 4 and f[4] or ''
    else
      out[#out + 1] = $ENTRY_FOREIGN
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
  return {$READ_WAITING, fresh, length}
end
local marker = string.format('%d-1', length)
if err then return {$READ_ENTRIES, fresh, marker, $ENTRY_FAILED_END, err} end
return {$READ_ENTRIES, fresh, marker, $ENTRY_END, ''}
