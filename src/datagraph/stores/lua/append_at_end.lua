-- Append a batch after whatever the stream holds (RedisStore.append_at_end).
-- KEYS: the stream, the run's key set, its watchers, its tokens, its blobs, and
-- for a large batch its blob key (as for append).
-- ARGV: count, data, ttl_ms, the writer's wake stream, this call's token, then
-- tokens of earlier calls whose answers arrived (forgotten here).
-- Returns {status, length (= the batch's start), fresh}; status is written (also
-- when there was nothing to write) or ended.
-- The token makes a retried call exact: an attempt that wrote the batch but whose
-- answer was lost left its start under the token, and the retry returns that.
local seen = redis.call('HGET', KEYS[4], ARGV[5])
if seen then return {$APPEND_WRITTEN, tonumber(string.sub(seen, 3)), 0} end
forget(KEYS[4], 6)
local length, ended = last_entry(KEYS[1])
local count = tonumber(ARGV[1])
if ended or count == 0 then
  drop_blob(KEYS[5], KEYS[6])
  return {ended and $APPEND_ENDED or $APPEND_WRITTEN, length, 0}
end
add_batch(string.format('%d-0', length + count), ARGV[1], ARGV[2], KEYS[5],
          KEYS[6], ARGV[3])
record(KEYS[4], ARGV[5], string.format('a %d', length), ARGV[3])
notify(KEYS[3], ARGV[4])
return {$APPEND_WRITTEN, length, touch(KEYS[1], ARGV[3])}
