-- Set metadata fields of a run (RedisStore.set_fields).
-- KEYS: the run's metadata hash, the run's key set.
-- ARGV: ttl_ms, name1, value1, name2, value2, ...
-- Returns fresh: 1 when this started the run's key set.
for i = 2, #ARGV, 2 do redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end
return touch(KEYS[1], ARGV[1])
