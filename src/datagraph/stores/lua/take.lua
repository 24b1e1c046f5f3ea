-- Hand a group's next untaken values to one member (RedisStore.take).
-- KEYS: the stream, the run's key set, the stream's cursors, its watchers, its
-- tokens.
-- ARGV: group, max_count, ttl_ms, wake stream ('' for none), this call's token,
-- then tokens of earlier calls whose answers arrived (forgotten here).
-- The group's cursor is the position of its next value; the entry after it holds
-- that value (or, its positions trimmed, the next one held). Returns one of
--   {$TAKE_NOTHING, cursor, length}     nothing to take yet (the wake stream, if
--                                       given, now watches)
--   {$TAKE_TAKEN, start, stop, entry end, count, data, fresh}
--                                       positions start..stop-1 taken (data
--                                       {blob key}: a large batch)
--   {$TAKE_ALL_TAKEN, cursor, length, has_error, error}
--                                       the stream ended, the group took all
--   {$TAKE_FOREIGN, entry id, field names}  the next entry is not Datagraph's
--   {$TAKE_LOST, start, stop}           a retry, but the entry is gone
-- A share handed out is kept under the token ('t <start> <stop> <end>') until a
-- later call says its answer arrived, so a retry of a call whose answer was lost
-- gets the same share, and trim keeps the entry meanwhile.
local function share(start, taken, stop, entry, fresh)
  local f = entry[2]
  local data = f[4]
  if f[3] == 'b' then data = {data} end
  return {$TAKE_TAKEN, start, taken, stop, tonumber(f[2]), data, fresh}
end
local seen = redis.call('HGET', KEYS[5], ARGV[5])
if seen then
  local start, taken, stop = string.match(seen, 't (%d+) (%d+) (%d+)')
  local again = redis.call('XRANGE', KEYS[1], stop .. '-0', stop .. '-0')
  if #again == 0 then return {$TAKE_LOST, tonumber(start), tonumber(taken)} end
  return share(tonumber(start), tonumber(taken), tonumber(stop), again[1], 0)
end
forget(KEYS[5], 6)
local cursor = tonumber(redis.call('HGET', KEYS[3], ARGV[1]) or '0')
local entries = redis.call('XRANGE', KEYS[1], string.format('(%d-0', cursor), '+',
                           'COUNT', 1)
if #entries == 0 then
  watch(KEYS[4], ARGV[4])
  return {$TAKE_NOTHING, cursor, (last_entry(KEYS[1]))}
end
local id, f = entries[1][1], entries[1][2]
local kind = entry_kind(entries[1])
local count = kind ~= 'e' and tonumber(f[2]) or nil
if kind == nil or (kind ~= 'e' and not count) then
  return {$TAKE_FOREIGN, id, field_names(entries[1])}
end
local stop = id_position(id)
if kind == 'e' then
  if #f == 4 then return {$TAKE_ALL_TAKEN, cursor, stop, 1, f[4]} end
  return {$TAKE_ALL_TAKEN, cursor, stop, 0, ''}
end
local start = math.max(cursor, stop - count)
local taken = math.min(stop, start + tonumber(ARGV[2]))
redis.call('HSET', KEYS[3], ARGV[1], string.format('%d', taken))
record(KEYS[5], ARGV[5], string.format('t %d %d %d', start, taken, stop), ARGV[3])
return share(start, taken, stop, entries[1], touch(KEYS[3], ARGV[3]))
