-- How notify (lib.lua) wakes another process on a Redis Cluster: a message on its
-- wake channel. PUBLISH names no key, so the script stays in the run's slot (the
-- cluster bus carries the message to every node).
redis.call('PUBLISH', wake, KEYS[1])
