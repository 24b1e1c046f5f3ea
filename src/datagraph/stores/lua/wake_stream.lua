-- How notify (lib.lua) wakes another process on a standalone server: an entry in
-- its wake stream, a key the script does not declare (which a standalone allows).
redis.call('XADD', wake, 'MAXLEN', '$WAKE_COUNT', '*', 'k', KEYS[1])
      redis.call('PEXPIRE', wake, '$WAKE_TTL_MS')
