-- End a stream after its last value (RedisStore.end_stream).
-- KEYS: the stream, the run's key set, its watchers.
-- ARGV: ttl_ms, has_error ('0'/'1'), error, the writer's wake stream.
-- Returns {ended_now, length, fresh}.
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
