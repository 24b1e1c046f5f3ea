-- Append a batch at an explicit position (RedisStore.append).
-- KEYS: the stream, the run's key set, the stream's watchers, its cursors, its
-- blobs, and for a large batch the blob key its data was SET in.
-- ARGV: start, stop (= start + count), count, data ('' if in a blob), ttl_ms, the
-- writer's wake stream, then the readers of the writer's event loop blocked right
-- at start: they are handed the batch there, so their cursors move past it here.
-- Returns {status, length, fresh}.
local length, ended = last_entry(KEYS[1])
local start, stop = tonumber(ARGV[1]), tonumber(ARGV[2])
local status = nil
if stop <= length or (start < length and not ended) then status = $APPEND_HELD
elseif ended then status = $APPEND_ENDED
elseif start > length then status = $APPEND_GAP end
if status then
  drop_blob(KEYS[5], KEYS[6])
  return {status, length, 0}
end
add_batch(ARGV[2] .. '-0', ARGV[3], ARGV[4], KEYS[5], KEYS[6], ARGV[5])
notify(KEYS[3], ARGV[6])
local fresh = touch(KEYS[1], ARGV[5])
if #ARGV > 6 then
  for i = 7, #ARGV do
    local old = redis.call('HGET', KEYS[4], ARGV[i])
    if not old or tonumber(old) < stop then
      redis.call('HSET', KEYS[4], ARGV[i], ARGV[2])
    end
  end
  touch(KEYS[4], ARGV[5])
end
return {$APPEND_WRITTEN, stop, fresh}
