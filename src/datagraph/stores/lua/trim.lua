-- Drop the entries whose values all lie before a position (RedisStore.trim), and
-- forget the blobs of those entries; never the end marker (it holds the length
-- and the error), nor an entry holding a share of take whose answer may have
-- been lost (a retry hands it out again).
-- KEYS: the stream, its tokens, its blobs.
-- ARGV: before, then tokens of calls whose answers arrived (forgotten first).
-- Returns {how many entries were dropped, the keys of the blobs forgotten...}: the
-- caller deletes those, as a script deletes only keys it was given.
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
