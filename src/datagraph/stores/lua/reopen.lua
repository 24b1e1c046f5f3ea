-- Take back a stream's end (RedisStore.reopen): delete the end marker. The stream
-- keeps its length (its last id stays that of the marker).
-- KEYS: the stream, the run's key set, its watchers.
-- ARGV: ttl_ms, the writer's wake stream.
-- Returns 1 if the stream had ended, else 0.
local last = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)
if #last == 0 then return 0 end
local id = last[1][1]
if string.sub(id, string.find(id, '-', 1, true) + 1) == '0' then return 0 end
redis.call('XDEL', KEYS[1], id)
notify(KEYS[3], ARGV[2])
touch(KEYS[1], ARGV[1])
return 1
