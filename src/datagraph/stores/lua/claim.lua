-- Claim a name within a run (RedisStore.claim).
-- KEYS: the run's claims hash, the run's key set.
-- ARGV: ttl_ms, name, this call's token.
-- Returns {won, fresh}. The claim holds the winner's token, so a retried call
-- whose first answer was lost still wins.
local won = redis.call('HSETNX', KEYS[1], ARGV[2], ARGV[3])
if won == 0 and redis.call('HGET', KEYS[1], ARGV[2]) == ARGV[3] then won = 1 end
return {won, touch(KEYS[1], ARGV[1])}
