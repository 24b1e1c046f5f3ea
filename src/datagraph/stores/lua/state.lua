-- A stream's length and end (RedisStore.state).
-- KEYS: the stream.
-- Returns {length, ended, has_error, error}: always four items.
local length, ended, err = last_entry(KEYS[1])
return {length, ended and 1 or 0, err and 1 or 0, err or ''}
