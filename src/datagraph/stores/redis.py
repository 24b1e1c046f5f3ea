"""The Redis/Valkey store: run data shared by every process that can reach a server.

Streams are Redis Streams holding one entry per appended batch. An entry's id encodes
the position just past its batch (``<end>-0``), so ids grow with positions, the server
itself rejects out-of-order ids, and a reader at position ``p`` asks for the entries
after ``<p>-0``. The end of a stream is the entry ``<length>-1``, right after its last
batch (``<length>-2`` and so on once a resumed run reopened and ended it again).
Appends and ends are Lua scripts, so checking a stream's length and writing it is
one atomic step however many producers race.

Readers' cursors and groups' cursors share one hash per stream (reader or group name
-> position). The read script records a reader's cursor in the same call, and the
take script moves a group's cursor past the values it hands out, so both stay one
round trip. Trimming (XTRIM MINID) never drops the end marker, and a stream trimmed
empty still knows its length: Redis keeps the id of its last entry (XINFO STREAM
``last-generated-id``), which is also why new appends still need higher ids.

Waking a blocked reader costs no round trip of its own. Each event loop using the
store (a *session*; usually one per process) has a private *wake* stream. A reader
that finds nothing new registers that stream, in the same read script, in the
stream's *watchers* hash (wake stream -> expiry); every append or end then adds an
entry naming the changed stream to the wake stream of each other registered
session. The writer's own session is skipped: a write through this store object
wakes the readers of its loop directly and hands them the batch it has just
appended, so they need not read it back. Its append script also moves the cursors
of the readers blocked right where the batch starts past it, as their next read
would: handed a batch, a reader has consumed it as far as the store can tell. So
the reader's next read, if nothing has changed since and the registration still
holds (it lasts ``_WATCH_TTL_MS`` and is renewed well before by reading again),
waits without asking the server at all. A flow running in one process thus costs
one round trip per batch and stage, the append. (The scripts write to wake streams
they do not declare as keys, which a standalone server allows.)

Each session uses two clients: a multiplexed one for every ordinary command, and
one dedicated to ``XREAD BLOCK`` on the wake stream, because a Redis connection that
blocks can serve nothing else until it returns (measured with valkey-glide 2.6: a
PING sent on the same multiplexed client waited out the whole block). A background
task runs that XREAD while readers of the loop wait; as it watches one fixed key, a
new reader never has to interrupt it. Each stream the loop reads has a change
counter, bumped by local writes and by wake entries; a reader notes it before its
read script and waits only if it is unchanged afterwards, so a change landing
between the read and the wait is never missed.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import math
import threading
import time
import uuid
from typing import TYPE_CHECKING, Any, Self
from urllib.parse import unquote, urlsplit

import anyio
import anyio.lowlevel

from .. import _background, _keys
from ..exceptions import StoreConnectionError, StoreError, StreamClosedError
from ._base import Batch, Chunk, Share, Store, StreamState

try:
    from glide import Batch as GlideBatch
    from glide import (
        ClosingError,
        GlideClient,
        GlideClientConfiguration,
        GlideError,
        NodeAddress,
        Script,
        ServerCredentials,
        StreamReadOptions,
    )
    from glide import ConnectionError as GlideConnectionError
    from glide import TimeoutError as GlideTimeoutError
except ImportError as exc:  # pragma: no cover - depends on the installed extras
    msg = "RedisStore needs the valkey-glide client: pip install 'datagraph[redis]'"
    raise ImportError(msg) from exc

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence
    from types import TracebackType

__all__ = ("RedisStore",)

_DEFAULT_URL = "redis://localhost:6379/0"
_DEFAULT_RETENTION = 7 * 24 * 3600.0
#: Most entries (batches) one read returns, and the size at which it stops adding
#: more: a reader's memory stays bounded when batches are large.
_READ_COUNT = 512
_READ_BYTES = 8 * 1024 * 1024
#: Longest single XREAD BLOCK; a longer wait simply issues another one.
_MAX_BLOCK_MS = 10_000
#: How long a blocked reader's registration in a stream's watchers hash lasts, and
#: how often a reader still waiting renews it (by reading again).
_WATCH_TTL_MS = 30_000
_RENEW_S = 10.0
#: How long after a registration this process still counts on it (a safe margin
#: below ``_WATCH_TTL_MS``, which runs on the server's clock).
_WATCHED_S = _WATCH_TTL_MS / 1000 - _RENEW_S
#: Entries a wake stream keeps, and most one XREAD returns: a reply this long may
#: have lost older entries, so it wakes every reader of the loop.
_WAKE_COUNT = 64
#: Most batches appended here that a blocked reader of this loop may take directly.
_HANDED_CHUNKS = 4
#: Streams whose keys a store remembers (it forgets them all past that).
_KEYS_CACHED = 4096
#: Stream keys a session follows between reads before it forgets idle ones.
_TRACKED_KEYS = 1024
#: Pauses of the wake watcher after a failed XREAD, doubling up to the second.
_RETRY_FIRST_S = 0.05
_RETRY_MAX_S = 1.0
#: Time allowed for one ordinary command, reconnection included (glide's default
#: of 250 ms is too short for multi-megabyte batches).
_REQUEST_TIMEOUT_MS = 5_000
#: How long a process's wake stream outlives its last use (it is tiny).
_WAKE_TTL_MS = 3_600_000

# ----------------------------------------------------------------------------- Lua
# Shared by the scripts below. KEYS[1] is always the key the script is about and
# KEYS[2] (when used) the run's key set.
_LUA_LIB = (
    """
local function id_position(id)
  -- The position an entry id stands for: its milliseconds part.
  return tonumber(string.sub(id, 1, string.find(id, '-', 1, true) - 1))
end

local function last_entry(key)
  -- Length of the stream at key, whether it has ended, and the end's error.
  local last = redis.call('XREVRANGE', key, '+', '-', 'COUNT', 1)
  if #last == 0 then
    -- No stream, or one that trim emptied. Trim keeps the end marker, so such a
    -- stream has not ended, and it still knows the id of its last entry.
    if redis.call('EXISTS', key) == 0 then return 0, false, nil end
    local info = redis.call('XINFO', 'STREAM', key)
    for i = 1, #info, 2 do
      if info[i] == 'last-generated-id' then
        return id_position(info[i + 1]), false, nil
      end
    end
    return 0, false, nil
  end
  local id = last[1][1]
  local dash = string.find(id, '-', 1, true)
  local length = tonumber(string.sub(id, 1, dash - 1))
  if string.sub(id, dash + 1) == '0' then return length, false, nil end
  local fields = last[1][2]
  for i = 1, #fields, 2 do
    if fields[i] == 'error' then return length, true, fields[i + 1] end
  end
  return length, true, nil
end

local function touch(key, ttl)
  -- Refresh the expiry of key and of the run's key set, listing key in it.
  -- Returns 1 when the run had no key set: the caller then indexes the run.
  local fresh = 1 - redis.call('EXISTS', KEYS[2])
  redis.call('SADD', KEYS[2], key)
  redis.call('PEXPIRE', KEYS[2], ttl)
  redis.call('PEXPIRE', key, ttl)
  return fresh
end

local function server_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

local function watch(watchers, wake)
  -- Register the wake stream of a reader about to wait, for a while.
  if wake == '' then return end
  redis.call('HSET', watchers, wake, string.format('%d', server_ms() + $WATCH_TTL))
  redis.call('PEXPIRE', watchers, '$WATCH_TTL')
end

local function notify(watchers, own)
  -- Tell each other process registered in watchers that KEYS[1] changed; the
  -- writer's own process (wake stream own) wakes its readers itself.
  local found = redis.call('HGETALL', watchers)
  if #found == 0 then return end
  local now = server_ms()
  for i = 1, #found, 2 do
    local wake = found[i]
    if tonumber(found[i + 1]) < now then
      redis.call('HDEL', watchers, wake)
    elseif wake ~= own then
      redis.call('XADD', wake, 'MAXLEN', '$WAKE_COUNT', '*', 'k', KEYS[1])
      redis.call('PEXPIRE', wake, '$WAKE_TTL')
    end
  end
end
""".replace("$WAKE_COUNT", str(_WAKE_COUNT))
    .replace("$WAKE_TTL", str(_WAKE_TTL_MS))
    .replace("$WATCH_TTL", str(_WATCH_TTL_MS))
)

# KEYS: the stream, the run's key set, the stream's watchers, its cursors. ARGV:
# start, stop (= start + count), count, data, ttl_ms, the writer's wake stream,
# then the readers of the writer's event loop blocked right at start: they are
# handed the batch there, so their cursors move past it here.
# Returns {status, length, fresh}; status 0 written, 1 already held, 2 ended, 3 gap.
_APPEND_LUA = (
    _LUA_LIB
    + """
local length, ended = last_entry(KEYS[1])
local start, stop = tonumber(ARGV[1]), tonumber(ARGV[2])
if stop <= length then return {1, length, 0} end
if ended then return {2, length, 0} end
if start < length then return {1, length, 0} end
if start > length then return {3, length, 0} end
redis.call('XADD', KEYS[1], ARGV[2] .. '-0', 'n', ARGV[3], 'd', ARGV[4])
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
return {0, stop, fresh}
"""
)

# KEYS as for append. ARGV: ttl_ms, has_error ('0'/'1'), error, the writer's wake
# stream. Returns {ended_now, length, fresh}.
_END_LUA = (
    _LUA_LIB
    + """
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
"""
)

# KEYS as for append. ARGV: ttl_ms, the writer's wake stream. Deletes the end
# marker; the stream keeps its length (its last id stays that of the marker).
# Returns 1 if the stream had ended, else 0.
_REOPEN_LUA = (
    _LUA_LIB
    + """
local last = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)
if #last == 0 then return 0 end
local id = last[1][1]
if string.sub(id, string.find(id, '-', 1, true) + 1) == '0' then return 0 end
redis.call('XDEL', KEYS[1], id)
notify(KEYS[3], ARGV[2])
touch(KEYS[1], ARGV[1])
return 1
"""
)

# KEYS as for append. ARGV: count, data, ttl_ms, the writer's wake stream.
# Returns {status, length (= the batch's start), fresh}; status 0 written (or
# nothing to write), 2 ended.
_APPEND_AT_END_LUA = (
    _LUA_LIB
    + """
local length, ended = last_entry(KEYS[1])
if ended then return {2, length, 0} end
local count = tonumber(ARGV[1])
if count == 0 then return {0, length, 0} end
redis.call('XADD', KEYS[1], string.format('%d-0', length + count),
           'n', ARGV[1], 'd', ARGV[2])
notify(KEYS[3], ARGV[4])
return {0, length, touch(KEYS[1], ARGV[3])}
"""
)

# KEYS: the stream, the run's key set, the stream's cursors, its watchers. ARGV:
# position, ttl_ms, wake stream ('' for none), and with a reader its name. Returns
# {fresh, ...}: fresh is 1 when recording the cursor started the run's key set.
# The rest is a flat list of triples {id, count, data} in order, where an end
# marker has count -1 (no error, data '') or -2 (data = the error). With nothing
# past the position, the rest is the end marker triple if the stream has ended,
# else {length}; then the wake stream, if given, is registered among the watchers:
# the reader is about to wait. Reads stop after $READ_COUNT entries or once they
# hold $READ_BYTES bytes.
_READ_LUA = (
    _LUA_LIB
    + """
local fresh = 0
if ARGV[4] then
  -- Record the reader's cursor, only ever moving it forward.
  local old = redis.call('HGET', KEYS[3], ARGV[4])
  if not old or tonumber(old) < tonumber(ARGV[1]) then
    redis.call('HSET', KEYS[3], ARGV[4], ARGV[1])
    fresh = touch(KEYS[3], ARGV[2])
  end
end
local cursor = '(' .. ARGV[1] .. '-0'
local max_count, max_bytes = $READ_COUNT, $READ_BYTES
local out, n, size = {fresh}, 0, 0
while n < max_count and size < max_bytes do
  local want = math.min(max_count - n, 64)
  local entries = redis.call('XRANGE', KEYS[1], cursor, '+', 'COUNT', want)
  for _, entry in ipairs(entries) do
    local f = entry[2]
    out[#out + 1] = entry[1]
    if f[1] == 'n' then
      out[#out + 1] = f[2]
      out[#out + 1] = f[4]
      size = size + #f[4]
    elseif f[3] == 'error' then
      out[#out + 1] = -2
      out[#out + 1] = f[4]
    else
      out[#out + 1] = -1
      out[#out + 1] = ''
    end
    n = n + 1
    cursor = '(' .. entry[1]
    if size >= max_bytes then break end
  end
  if #entries < want then break end
end
if n > 0 then return out end
local length, ended, err = last_entry(KEYS[1])
if not ended then
  watch(KEYS[4], ARGV[3])
  return {fresh, length}
end
if err then return {fresh, string.format('%d-1', length), -2, err} end
return {fresh, string.format('%d-1', length), -1, ''}
""".replace("$READ_COUNT", str(_READ_COUNT)).replace("$READ_BYTES", str(_READ_BYTES))
)

# KEYS: the stream, the run's key set, the stream's cursors, its watchers. ARGV:
# group, max_count, ttl_ms, wake stream ('' for none). The group's
# cursor is the position of its next value; the entry after it holds that value
# (or, its positions trimmed, the next one held). Returns one of
#   {0, cursor, length}                       nothing to take yet (the wake
#                                             stream, if given, now watches)
#   {1, start, stop, entry end, count, data, fresh}   positions start..stop-1 taken
#   {2, cursor, length, has_error, error}    the stream ended, the group took all
_TAKE_LUA = (
    _LUA_LIB
    + """
local cursor = tonumber(redis.call('HGET', KEYS[3], ARGV[1]) or '0')
local entries = redis.call('XRANGE', KEYS[1], string.format('(%d-0', cursor), '+',
                           'COUNT', 1)
if #entries == 0 then
  watch(KEYS[4], ARGV[4])
  return {0, cursor, (last_entry(KEYS[1]))}
end
local id, f = entries[1][1], entries[1][2]
local stop = id_position(id)
if f[1] ~= 'n' then  -- the end marker
  if f[3] == 'error' then return {2, cursor, stop, 1, f[4]} end
  return {2, cursor, stop, 0, ''}
end
local count = tonumber(f[2])
local start = math.max(cursor, stop - count)
local taken = math.min(stop, start + tonumber(ARGV[2]))
redis.call('HSET', KEYS[3], ARGV[1], string.format('%d', taken))
return {1, start, taken, stop, count, f[4], touch(KEYS[3], ARGV[3])}
"""
)

# ARGV: before. Drops the entries whose values all lie before it, never the end
# marker (it holds the length and the error). Returns how many were dropped.
_TRIM_LUA = (
    _LUA_LIB
    + """
local before = tonumber(ARGV[1])
local length, ended = last_entry(KEYS[1])
local min_id = string.format('%d-0', before + 1)
if ended and before >= length then min_id = string.format('%d-1', length) end
return redis.call('XTRIM', KEYS[1], 'MINID', min_id)
"""
)

# Returns {length, ended} or {length, ended, error}.
_STATE_LUA = (
    _LUA_LIB
    + """
local length, ended, err = last_entry(KEYS[1])
if err then return {length, 1, err} end
return {length, ended and 1 or 0}
"""
)

# ARGV: ttl_ms, name1, value1, name2, value2, ... Returns fresh.
_SET_FIELDS_LUA = (
    _LUA_LIB
    + """
for i = 2, #ARGV, 2 do redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end
return touch(KEYS[1], ARGV[1])
"""
)

# ARGV: ttl_ms, name. Returns {won, fresh}.
_CLAIM_LUA = (
    _LUA_LIB
    + """
local won = redis.call('HSETNX', KEYS[1], ARGV[2], '1')
return {won, touch(KEYS[1], ARGV[1])}
"""
)

_APPENDED, _HELD, _CLOSED, _GAP = 0, 1, 2, 3
_NOTHING, _TAKEN, _ALL_TAKEN = 0, 1, 2


def _watchers_key(prefix: str, run_id: str, stream: str) -> str:
    """Return the key of the hash of processes waiting for a stream to change.

    Fields are wake stream keys, values the server time (ms) a registration ends.
    It expires on its own shortly after the last registration, so it is not in the
    run's key set (a blocked read must not index a run that does not exist yet).
    """
    return f"{_keys.run_tag(prefix, run_id)}:w:{stream}"


def _script(code: str) -> Any:
    return Script(code)  # type: ignore[no-untyped-call]  # glide leaves it untyped


class _Scripts:
    """The Lua scripts, registered with glide when first needed."""

    _lock = threading.Lock()
    _loaded: _Scripts | None = None

    def __init__(self) -> None:
        self.append = _script(_APPEND_LUA)
        self.end = _script(_END_LUA)
        self.reopen = _script(_REOPEN_LUA)
        self.read = _script(_READ_LUA)
        self.append_at_end = _script(_APPEND_AT_END_LUA)
        self.take = _script(_TAKE_LUA)
        self.trim = _script(_TRIM_LUA)
        self.state = _script(_STATE_LUA)
        self.set_fields = _script(_SET_FIELDS_LUA)
        self.claim = _script(_CLAIM_LUA)

    @classmethod
    def get(cls) -> _Scripts:
        with cls._lock:
            if cls._loaded is None:
                cls._loaded = cls()
            return cls._loaded


# ------------------------------------------------------------------------- the URL
@dataclasses.dataclass(frozen=True, slots=True)
class _Address:
    """Where the server is and how to log in, parsed from a URL."""

    host: str
    port: int
    db: int
    tls: bool
    username: str | None
    password: str | None = dataclasses.field(repr=False)

    @property
    def safe_url(self) -> str:
        """The URL without the password, fit for messages and logs."""
        scheme = "rediss" if self.tls else "redis"
        user = f"{self.username}@" if self.username else ""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{scheme}://{user}{host}:{self.port}/{self.db}"


def _parse_url(url: str) -> _Address:
    """Parse ``redis://[[user]:password@]host[:port][/db]`` (``rediss://`` for TLS).

    Raises:
        ValueError: the URL has another scheme or a malformed port or db number.
    """
    parts = urlsplit(url)
    if parts.scheme not in ("redis", "rediss"):
        msg = f"a Redis URL starts with redis:// or rediss:// (TLS), got {url!r}"
        raise ValueError(msg)
    try:
        port = parts.port or 6379
    except ValueError:
        msg = f"invalid port in Redis URL {url!r}"
        raise ValueError(msg) from None
    path = parts.path.strip("/")
    if path and not path.isdigit():
        msg = f"the path of a Redis URL is a database number, got {path!r} in {url!r}"
        raise ValueError(msg)
    return _Address(
        host=parts.hostname or "localhost",
        port=port,
        db=int(path or 0),
        tls=parts.scheme == "rediss",
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password is not None else None,
    )


# ------------------------------------------------------------------ blocked reads
class _Waiter:
    """A read blocked on a stream key of this loop: at which position, for whom."""

    __slots__ = ("event", "position", "reader")

    def __init__(self, position: int, reader: str | None) -> None:
        self.event = anyio.Event()
        self.position = position
        self.reader = reader


class _Tracked:
    """What one event loop knows of a stream key that its readers use."""

    __slots__ = (
        "blocked",
        "chunks",
        "cursors",
        "length",
        "length_version",
        "users",
        "version",
        "waiters",
        "watched_until",
    )

    def __init__(self) -> None:
        self.users = 0  # reads in progress on the key
        self.blocked = 0  # of which waiting, or woken and not yet running
        #: Bumped on every change this loop hears of (its own writes, wake entries).
        self.version = 0
        self.waiters: list[_Waiter] = []
        #: The last few batches this loop appended while readers were blocked.
        self.chunks: list[Chunk] = []
        #: The stream held ``length`` values when ``version`` was
        #: ``length_version`` (this loop had just appended its last batch).
        self.length = 0
        self.length_version = -1
        #: Cursors that appends of this loop moved on the server, past the batch
        #: they handed to readers blocked right before it.
        self.cursors: dict[str, int] = {}
        #: Until when (event loop clock) the server surely keeps this loop's wake
        #: stream registered among the stream's watchers.
        self.watched_until = -math.inf

    def blocked_readers(self, position: int) -> list[str]:
        """Name the readers blocked right at ``position`` (not yet woken)."""
        return [
            w.reader
            for w in self.waiters
            if w.position == position and w.reader is not None
        ]

    def appended(self, chunk: Chunk, moved: Sequence[str]) -> None:
        """Note a batch this loop appended, and the cursors its script moved."""
        self.length, self.length_version = chunk.end, self.version
        for reader in moved:
            self.cursors[reader] = max(self.cursors.get(reader, 0), chunk.end)
        # Keep it for the readers blocked right now, which take it from here.
        if self.blocked:
            self.chunks = [*self.chunks[1 - _HANDED_CHUNKS :], chunk]
        elif self.chunks:
            self.chunks = []

    def handed(self, position: int) -> list[Chunk]:
        """Return the kept batches that follow on one another from ``position``."""
        found: list[Chunk] = []
        for chunk in self.chunks:
            if chunk.start == position:
                found.append(chunk)
                position = chunk.end
        return found

    def settled(self, position: int, reader: str | None, now: float) -> bool:
        """Tell whether a read at ``position`` may wait without asking the server.

        True when the stream ends right there as far as anyone has said (this
        loop's append made it so, and no change came since), the server has the
        reader's cursor at ``position`` already, and this loop's registration
        holds: a read script would record nothing and find nothing.
        """
        return (
            self.length_version == self.version
            and self.length == position
            and self.watched_until > now
            and (reader is None or self.cursors.get(reader, -1) >= position)
        )


def _loop_finished(loop: object) -> bool:
    """Tell whether the event loop behind an anyio token has finished."""
    if isinstance(loop, asyncio.AbstractEventLoop):
        return loop.is_closed()
    run_sync_soon = getattr(loop, "run_sync_soon", None)  # a trio token
    if run_sync_soon is None:
        return False  # unknown kind of loop: keep its session
    try:
        run_sync_soon(_do_nothing)
    except RuntimeError:  # trio.RunFinishedError
        return True
    return False


def _do_nothing() -> None:
    return


class _Session:
    """One event loop's connections to the server and its blocked readers.

    glide clients and anyio events belong to the event loop that made them, so a
    store used from a second ``anyio.run()`` (or from asyncio, then trio) opens a
    new session there.
    """

    def __init__(self, store: RedisStore, loop: object) -> None:
        self.store = store
        self.loop = loop
        self.lock = anyio.Lock()
        self.client: Any = None  # GlideClient: every ordinary command
        self.blocker: Any = None  # GlideClient: XREAD BLOCK on the wake stream
        self.wake_key = _keys.wake_key(store.prefix, uuid.uuid4().hex).encode()
        self.wake_id = b"0-0"  # the last wake entry seen
        self.tracked: dict[bytes, _Tracked] = {}
        self.waiting = 0  # blocked reads
        self.watching = False  # the task that reads the wake stream runs
        self.closed = False

    async def connect(self, operation: str) -> Any:
        """Return the multiplexed client, connecting on first use for ``operation``."""
        if self.client is None:
            async with self.lock:
                if self.client is None:
                    with self.store._errors(operation):
                        self.client = await self._open("datagraph")
        return self.client

    async def _open(self, name: str) -> Any:
        client = await GlideClient.create(self.store._config(name))
        if self.closed:  # closed while connecting: no one else would close it
            with contextlib.suppress(Exception):
                await client.close()
            msg = f"the store for {self.store.url} was closed"
            raise StoreConnectionError(msg)
        return client

    async def close(self) -> None:
        """Close both clients (safe from any event loop, and more than once)."""
        self.closed = True
        clients, self.client, self.blocker = (self.client, self.blocker), None, None
        for client in clients:
            if client is not None:
                # close() never awaits, so it works after the loop that made the
                # client is gone; it may still complain about that loop's futures.
                with contextlib.suppress(Exception):
                    await client.close()

    # -- waking ------------------------------------------------------------------
    def track(self, key: bytes) -> _Tracked:
        """Follow the changes of ``key`` until the matching ``untrack``."""
        tracked = self.tracked.get(key)
        if tracked is None:
            if len(self.tracked) >= _TRACKED_KEYS:
                self._prune(anyio.current_time())
            tracked = self.tracked[key] = _Tracked()
        tracked.users += 1
        return tracked

    def untrack(self, key: bytes, tracked: _Tracked) -> None:
        tracked.users -= 1
        if not tracked.blocked:
            tracked.chunks = []  # no reader left to hand them to
        # Between reads, a key stays known while its registration holds: the next
        # read may then wait without a round trip (see ``_Tracked.settled``).
        if not tracked.users and tracked.watched_until <= anyio.current_time():
            self._drop(key, tracked)

    def _drop(self, key: bytes, tracked: _Tracked) -> None:
        if self.tracked.get(key) is tracked:
            del self.tracked[key]

    def _prune(self, now: float) -> None:
        """Drop the keys no read uses, those that cannot save a round trip first."""
        idle = [(k, t) for k, t in self.tracked.items() if not t.users]
        expired = [(k, t) for k, t in idle if t.watched_until <= now]
        for key, tracked in expired or idle:
            self._drop(key, tracked)

    def forget(self, prefix: bytes) -> None:
        """Forget what is known of the keys starting with ``prefix`` (deleted)."""
        for key, tracked in list(self.tracked.items()):
            if key.startswith(prefix):
                tracked.cursors.clear()
                tracked.length_version = -1
                self.wake(key)

    def readers_at(self, key: bytes, position: int) -> list[str]:
        """Name this loop's readers blocked on ``key`` right at ``position``."""
        tracked = self.tracked.get(key)
        return tracked.blocked_readers(position) if tracked is not None else []

    def wake(
        self, key: bytes, chunk: Chunk | None = None, moved: Sequence[str] = ()
    ) -> None:
        """Note a change of ``key`` and wake the readers blocked on it.

        ``chunk`` is a batch this loop has just appended at ``key``, whose script
        also moved the cursors of the readers ``moved`` past it; the readers it
        wakes may take it from here (see ``RedisStore.read``).
        """
        tracked = self.tracked.get(key)
        if tracked is not None:
            tracked.version += 1
            if chunk is not None:
                tracked.appended(chunk, moved)
            waiters, tracked.waiters = tracked.waiters, []
            for waiter in waiters:
                waiter.event.set()

    def wake_all(self) -> None:
        """Wake every blocked reader (they read again and wait again if need be)."""
        for key in list(self.tracked):
            self.wake(key)

    async def wait(
        self,
        tracked: _Tracked,
        seen: int,
        until: float,
        position: int,
        reader: str | None,
    ) -> None:
        """Block until the key changes after its version ``seen``, or ``until``.

        The caller, a read at ``position`` (for ``reader``), made sure that this
        loop's wake stream is registered for the key, and noted ``seen`` before it
        last learnt that the stream holds nothing new: any change since then
        returns at once. May also return early; the caller reads again.
        """
        if tracked.version != seen:
            return
        waiter = _Waiter(position, reader)
        tracked.waiters.append(waiter)
        tracked.blocked += 1
        self.waiting += 1
        if not self.watching:
            self.watching = True
            _background.spawn(self._watch)
        try:
            with anyio.move_on_at(until):
                await waiter.event.wait()
        finally:
            self.waiting -= 1
            tracked.blocked -= 1
            with contextlib.suppress(ValueError):  # gone when woken
                tracked.waiters.remove(waiter)

    async def _watch(self) -> None:
        """Read the wake stream while readers wait; wake those whose key changed.

        Runs as a background task of the event loop. An XREAD in flight when the
        last reader stops waiting is left to finish (an abandoned XREAD would keep
        its connection blocked), so a reader that starts waiting meanwhile is
        covered at once: every registration of this loop names the same stream.
        """
        delay = _RETRY_FIRST_S
        try:
            while self.waiting:
                try:
                    reply = await self._read_wakes()
                except Exception:
                    # Readers hear of the failure (or of aclose()) on their own
                    # connection, or wait again; wake entries stay meanwhile.
                    self.wake_all()
                    if self.closed:
                        return
                    await anyio.sleep(delay)
                    delay = min(delay * 2, _RETRY_MAX_S)
                    continue
                delay = _RETRY_FIRST_S
                entries: Mapping[bytes, Any] = (reply or {}).get(self.wake_key) or {}
                if not entries:
                    continue
                self.wake_id = list(entries)[-1]
                if len(entries) >= _WAKE_COUNT:
                    self.wake_all()  # older entries may have been trimmed away
                    continue
                for fields in entries.values():
                    for name, value in fields:
                        if name == b"k":
                            self.wake(value)
        finally:
            self.watching = False

    async def _read_wakes(self) -> Any:
        if self.blocker is None:
            async with self.lock:
                if self.blocker is None:
                    self.blocker = await self._open("datagraph-wait")
        return await self.blocker.xread(
            {self.wake_key: self.wake_id},
            StreamReadOptions(block_ms=_MAX_BLOCK_MS, count=_WAKE_COUNT),
        )


class _Errors:
    """Context manager that re-raises glide's errors as the store's own."""

    __slots__ = ("address", "operation")

    def __init__(self, address: _Address, operation: str) -> None:
        self.address = address  # its URL is only worked out for a message
        self.operation = operation

    def __enter__(self) -> None:
        return None

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if isinstance(exc, ClosingError | GlideConnectionError | GlideTimeoutError):
            url, detail = self.address.safe_url, str(exc).strip()
            msg = f"cannot reach Redis at {url} to {self.operation}: {detail}"
            raise StoreConnectionError(msg) from exc
        if isinstance(exc, GlideError):
            url, detail = self.address.safe_url, str(exc).strip()
            msg = f"Redis at {url} failed to {self.operation}: {detail}"
            raise StoreError(msg) from exc


@dataclasses.dataclass(frozen=True, slots=True)
class _StreamKeys:
    """The keys a value stream's commands use, worked out once per stream."""

    stream: str
    tracked: bytes  # the stream's key as a session tracks it
    keyset: str
    cursors: str
    watchers: str


# ------------------------------------------------------------------- the store
class RedisStore(Store):
    """Keep run data in Redis (>= 7.0) or Valkey (>= 7.2), shared by many processes.

    Connects on first use, inside the running event loop, and again from any other
    event loop the store is later used in (asyncio or trio). Every write refreshes
    the expiry of the keys it touches, so a run's data is deleted ``retention``
    seconds after it was last written.

    Args:
        url: ``redis://[[user]:password@]host[:port][/db]``; ``rediss://`` for TLS.
        prefix: first part of every key, to share a server between applications.
        retention: seconds that run data outlives its last write.

    Raises:
        ValueError: the URL, prefix or retention is not valid.
    """

    def __init__(
        self,
        url: str = _DEFAULT_URL,
        *,
        prefix: str = "dg",
        retention: float = _DEFAULT_RETENTION,
    ) -> None:
        if not retention > 0:
            msg = f"retention must be a positive number of seconds, got {retention!r}"
            raise ValueError(msg)
        self.address = _parse_url(url)
        self.prefix = _keys.check_prefix(prefix)
        self.retention = retention
        self._ttl_ms = str(max(1, math.ceil(retention * 1000)))
        self._scripts = _Scripts.get()
        self._sessions: dict[object, _Session] = {}
        self._sessions_lock = threading.Lock()  # a store may serve loops in threads
        self._stream_keys: dict[tuple[str, str], _StreamKeys] = {}

    @classmethod
    def from_url(cls, url: str, **kwargs: Any) -> Self:
        """Create a store for the server at ``url``; see the class for arguments."""
        return cls(url, **kwargs)

    @property
    def url(self) -> str:
        """The server's URL without the password."""
        return self.address.safe_url

    def __repr__(self) -> str:
        return f"RedisStore({self.url!r}, prefix={self.prefix!r})"

    # -- plumbing ----------------------------------------------------------------
    def _config(self, name: str) -> Any:
        address = self.address
        credentials = None
        if address.password is not None:
            credentials = ServerCredentials(
                password=address.password, username=address.username
            )
        return GlideClientConfiguration(
            [NodeAddress(address.host, address.port)],
            use_tls=address.tls,
            credentials=credentials,
            database_id=address.db,
            request_timeout=_REQUEST_TIMEOUT_MS,
            client_name=name,
        )

    def _errors(self, operation: str) -> _Errors:
        """Re-raise the client's errors as ``StoreConnectionError``/``StoreError``."""
        return _Errors(self.address, operation)

    async def _session(self) -> _Session:
        loop = anyio.lowlevel.current_token().native_token
        with self._sessions_lock:
            session = self._sessions.get(loop)
            finished: list[_Session] = []
            if session is None:
                finished = [
                    s for s in self._sessions.values() if _loop_finished(s.loop)
                ]
                for s in finished:
                    del self._sessions[s.loop]
                session = self._sessions[loop] = _Session(self, loop)
        for stale in finished:
            await stale.close()
        return session

    async def _client(self, operation: str) -> tuple[_Session, Any]:
        # Every command comes this way: the usual case takes no lock and no await.
        session = self._sessions.get(anyio.lowlevel.current_token().native_token)
        if session is None:
            session = await self._session()
        client = session.client
        if client is None:
            client = await session.connect(operation)
        return session, client

    def _keys_of(self, run_id: str, stream: str) -> _StreamKeys:
        found = self._stream_keys.get((run_id, stream))
        if found is None:
            if len(self._stream_keys) >= _KEYS_CACHED:
                self._stream_keys.clear()
            key = _keys.stream_key(self.prefix, run_id, stream)
            found = self._stream_keys[run_id, stream] = _StreamKeys(
                stream=key,
                tracked=key.encode(),
                keyset=_keys.keys_key(self.prefix, run_id),
                cursors=_keys.cursors_key(self.prefix, run_id, stream),
                watchers=_watchers_key(self.prefix, run_id, stream),
            )
        return found

    async def _index(self, client: Any, run_id: str) -> None:
        """Add a run to the index of runs, keeping the time it was first seen."""
        with self._errors(f"index run {run_id}"):
            await client.custom_command(
                ["ZADD", _keys.runs_key(self.prefix), "NX", repr(time.time()), run_id]
            )

    # -- streams -----------------------------------------------------------------
    async def append(
        self, run_id: str, stream: str, start: int, count: int, data: bytes
    ) -> int:
        """Append a batch at ``start``; see ``Store.append``."""
        if start < 0 or count < 0:
            msg = f"start and count must not be negative, got {start} and {count}"
            raise ValueError(msg)
        keys = self._keys_of(run_id, stream)
        operation = f"append to stream {stream!r} of run {run_id}"
        session, client = await self._client(operation)
        moved = session.readers_at(keys.tracked, start) if count else []
        with self._errors(operation):
            status, length, fresh = await client.invoke_script(
                self._scripts.append,
                keys=[keys.stream, keys.keyset, keys.watchers, keys.cursors],
                args=[
                    str(start),
                    str(start + count),
                    str(count),
                    data,
                    self._ttl_ms,
                    session.wake_key,
                    *moved,
                ],
            )
        if fresh:
            await self._index(client, run_id)
        if status == _APPENDED:
            session.wake(keys.tracked, Chunk(start, count, data), moved)
        elif status == _CLOSED:
            msg = (
                f"stream {stream!r} of run {run_id} has ended after {length} values; "
                f"cannot append values {start} to {start + count - 1}"
            )
            raise StreamClosedError(msg)
        elif status == _GAP:
            msg = (
                f"cannot append at position {start} to stream {stream!r} of run "
                f"{run_id}: it holds {length} values, so values {length} to "
                f"{start - 1} would be missing"
            )
            raise StoreError(msg)
        return int(length)

    async def end(self, run_id: str, stream: str, error: bytes | None = None) -> bool:
        """End the stream; see ``Store.end``."""
        keys = self._keys_of(run_id, stream)
        operation = f"end stream {stream!r} of run {run_id}"
        session, client = await self._client(operation)
        args = [
            self._ttl_ms,
            "0" if error is None else "1",
            error or b"",
            session.wake_key,
        ]
        with self._errors(operation):
            ended, _, fresh = await client.invoke_script(
                self._scripts.end,
                keys=[keys.stream, keys.keyset, keys.watchers],
                args=args,
            )
        if fresh:
            await self._index(client, run_id)
        if ended:
            session.wake(keys.tracked)
        return bool(ended)

    async def reopen(self, run_id: str, stream: str) -> bool:
        """Take back the stream's end; see ``Store.reopen``."""
        keys = self._keys_of(run_id, stream)
        operation = f"reopen stream {stream!r} of run {run_id}"
        session, client = await self._client(operation)
        with self._errors(operation):
            reopened = await client.invoke_script(
                self._scripts.reopen,
                keys=[keys.stream, keys.keyset, keys.watchers],
                args=[self._ttl_ms, session.wake_key],
            )
        if reopened:
            session.wake(keys.tracked)
        return bool(reopened)

    async def append_at_end(
        self, run_id: str, stream: str, count: int, data: bytes
    ) -> int:
        """Append a batch after the stream's last value; see ``Store.append_at_end``.

        One script checks the length and writes at it, so producers racing on one
        stream each get their own positions.
        """
        if count < 0:
            msg = f"count must not be negative, got {count}"
            raise ValueError(msg)
        keys = self._keys_of(run_id, stream)
        operation = f"append to stream {stream!r} of run {run_id}"
        session, client = await self._client(operation)
        with self._errors(operation):
            status, start, fresh = await client.invoke_script(
                self._scripts.append_at_end,
                keys=[keys.stream, keys.keyset, keys.watchers],
                args=[str(count), data, self._ttl_ms, session.wake_key],
            )
        if fresh:
            await self._index(client, run_id)
        if status == _CLOSED:
            msg = (
                f"stream {stream!r} of run {run_id} has ended after {start} values; "
                f"cannot append {count} more"
            )
            raise StreamClosedError(msg)
        if count:
            session.wake(keys.tracked, Chunk(int(start), count, data))
        return int(start)

    async def read(
        self,
        run_id: str,
        stream: str,
        position: int,
        *,
        timeout: float,
        reader: str | None = None,
    ) -> Batch:
        """Return chunks from ``position`` on, waiting up to ``timeout``.

        See ``Store.read``. Returns at most 512 chunks, and stops adding chunks
        once they hold 8 MiB; read again from the end of the last one for more.
        The script that reads also records ``reader``'s cursor. A read where a
        batch appended through this store object ended, with nothing changed
        since, skips it: that append recorded the cursor here (see the module's
        docstring).
        """
        keys = self._keys_of(run_id, stream)
        operation = f"read stream {stream!r} of run {run_id}"
        session, client = await self._client(operation)
        wait = timeout > 0
        deadline = anyio.current_time() + timeout if wait else 0.0
        args = [str(position), self._ttl_ms, session.wake_key if wait else b""]
        if reader is not None:
            args.append(reader)
        tracked = session.track(keys.tracked)
        try:
            now = anyio.current_time() if wait else 0.0
            # After a batch appended here, the server may hold nothing new to say.
            ask = not (wait and tracked.settled(position, reader, now))
            while True:
                seen = tracked.version
                if ask:
                    sent = now
                    with self._errors(operation):
                        reply = await client.invoke_script(
                            self._scripts.read,
                            keys=[
                                keys.stream,
                                keys.keyset,
                                keys.cursors,
                                keys.watchers,
                            ],
                            args=args,
                        )
                    if reply[0]:  # the cursor was the run's first key
                        await self._index(client, run_id)
                    if len(reply) > 2:
                        return _parse_entries(reply, 1)
                    now = anyio.current_time() if wait else 0.0
                    if now >= deadline:
                        return Batch(())
                    # The script registered this loop's wake stream (it ran
                    # after ``sent``; the server's clock then counts the TTL).
                    tracked.watched_until = sent + _WATCHED_S
                ask = True
                # Any change of the stream wakes this wait, also an end that a
                # reader asking beyond the last value must hear of.
                until = min(deadline, now + _RENEW_S)
                await session.wait(tracked, seen, until, position, reader)
                # The cursor is at this position on the server already, so what
                # this loop appended right there needs no second round trip.
                if handed := tracked.handed(position):
                    return Batch(handed)
                now = anyio.current_time()
        finally:
            session.untrack(keys.tracked, tracked)

    async def take(
        self,
        run_id: str,
        stream: str,
        group: str,
        max_count: int,
        *,
        timeout: float,
    ) -> Share:
        """Hand the group's next untaken values to this caller; see ``Store.take``.

        One script reads the group's cursor, finds the entry after it and moves the
        cursor past what it hands out, so every value goes to one member however
        many race. The share's chunk is the whole batch holding its values.
        """
        keys = self._keys_of(run_id, stream)
        operation = f"take from stream {stream!r} of run {run_id} for {group!r}"
        session, client = await self._client(operation)
        wait = timeout > 0
        deadline = anyio.current_time() + timeout if wait else 0.0
        args = [
            group,
            str(max(max_count, 1)),
            self._ttl_ms,
            session.wake_key if wait else b"",
        ]
        tracked = session.track(keys.tracked)
        try:
            while True:
                seen = tracked.version
                with self._errors(operation):
                    reply = await client.invoke_script(
                        self._scripts.take,
                        keys=[keys.stream, keys.keyset, keys.cursors, keys.watchers],
                        args=args,
                    )
                if reply[0] == _TAKEN:
                    _, start, stop, end, count, data, fresh = reply
                    if fresh:
                        await self._index(client, run_id)
                    return Share(Chunk(end - count, count, data), start, stop)
                cursor, length = int(reply[1]), int(reply[2])
                if reply[0] == _ALL_TAKEN:
                    error = reply[4] if reply[3] else None
                    end_state = StreamState(length, True, error)
                    return Share(None, cursor, cursor, end_state)
                now = anyio.current_time() if wait else 0.0
                if now >= deadline:
                    return Share(None, cursor, cursor)
                until = min(deadline, now + _RENEW_S)
                await session.wait(tracked, seen, until, cursor, None)
        finally:
            session.untrack(keys.tracked, tracked)

    async def cursors(self, run_id: str, stream: str) -> dict[str, int]:
        """Return each reader's (and group's) position; see ``Store.cursors``."""
        key = _keys.cursors_key(self.prefix, run_id, stream)
        operation = f"get the cursors of stream {stream!r} of run {run_id}"
        _, client = await self._client(operation)
        with self._errors(operation):
            found = await client.hgetall(key)
        return {name.decode(): int(value) for name, value in found.items()}

    async def trim(self, run_id: str, stream: str, before: int) -> None:
        """Drop the entries whose values all lie before ``before`` (XTRIM MINID).

        See ``Store.trim``. The end marker stays, and a stream trimmed empty still
        knows its length (Redis keeps the id of its last entry).
        """
        if before <= 0:
            return
        key = _keys.stream_key(self.prefix, run_id, stream)
        operation = f"trim stream {stream!r} of run {run_id}"
        _, client = await self._client(operation)
        with self._errors(operation):
            await client.invoke_script(
                self._scripts.trim, keys=[key], args=[str(before)]
            )

    async def state(self, run_id: str, stream: str) -> StreamState:
        """Return the stream's length and end state; see ``Store.state``."""
        key = _keys.stream_key(self.prefix, run_id, stream)
        operation = f"get the state of stream {stream!r} of run {run_id}"
        _, client = await self._client(operation)
        with self._errors(operation):
            reply = await client.invoke_script(self._scripts.state, keys=[key])
        error = reply[2] if len(reply) > 2 else None
        return StreamState(int(reply[0]), bool(reply[1]), error)

    # -- fields and claims -------------------------------------------------------
    async def set_fields(self, run_id: str, fields: Mapping[str, bytes]) -> None:
        """Set metadata fields of a run (HSET); see ``Store.set_fields``."""
        if not fields:
            return
        operation = f"set fields of run {run_id}"
        _, client = await self._client(operation)
        args: list[str | bytes] = [self._ttl_ms]
        for name, value in fields.items():
            args += (name, value)
        with self._errors(operation):
            fresh = await client.invoke_script(
                self._scripts.set_fields,
                keys=[
                    _keys.meta_key(self.prefix, run_id),
                    _keys.keys_key(self.prefix, run_id),
                ],
                args=args,
            )
        if fresh:
            await self._index(client, run_id)

    async def get_fields(
        self, run_id: str, names: Sequence[str] | None = None
    ) -> dict[str, bytes]:
        """Return metadata fields of a run; see ``Store.get_fields``."""
        key = _keys.meta_key(self.prefix, run_id)
        operation = f"get fields of run {run_id}"
        _, client = await self._client(operation)
        with self._errors(operation):
            if names is None:
                found = await client.hgetall(key)
                return {name.decode(): value for name, value in found.items()}
            if not names:
                return {}
            values = await client.hmget(key, list(names))
        return {n: v for n, v in zip(names, values, strict=True) if v is not None}

    async def delete_fields(self, run_id: str, names: Sequence[str]) -> None:
        """Remove metadata fields of a run (HDEL); see ``Store.delete_fields``."""
        if not names:
            return
        operation = f"delete fields of run {run_id}"
        _, client = await self._client(operation)
        with self._errors(operation):
            await client.hdel(_keys.meta_key(self.prefix, run_id), list(names))

    async def claim(self, run_id: str, name: str) -> bool:
        """Claim ``name`` within a run (HSETNX); see ``Store.claim``."""
        operation = f"claim {name!r} in run {run_id}"
        _, client = await self._client(operation)
        with self._errors(operation):
            won, fresh = await client.invoke_script(
                self._scripts.claim,
                keys=[
                    _keys.claims_key(self.prefix, run_id),
                    _keys.keys_key(self.prefix, run_id),
                ],
                args=[self._ttl_ms, name],
            )
        if fresh:
            await self._index(client, run_id)
        return bool(won)

    # -- runs --------------------------------------------------------------------
    async def list_runs(self) -> list[str]:
        """Return the ids of the runs in the store, oldest first.

        Runs whose data has expired are dropped from the index on the way.
        """
        runs_key = _keys.runs_key(self.prefix)
        _, client = await self._client("list runs")
        with self._errors("list runs"):
            found = await client.custom_command(["ZRANGE", runs_key, "0", "-1"])
            run_ids = [run_id.decode() for run_id in found or ()]
            if not run_ids:
                return []
            check = GlideBatch(is_atomic=False)
            for run_id in run_ids:
                check.exists([_keys.keys_key(self.prefix, run_id)])
            alive = await client.exec(check, raise_on_error=True)
            expired = [r for r, n in zip(run_ids, alive, strict=True) if not n]
            if expired:
                await client.zrem(runs_key, expired)
        return [r for r, n in zip(run_ids, alive, strict=True) if n]

    async def delete_run(self, run_id: str) -> None:
        """Delete every stream, field and claim of a run; see ``Store.delete_run``."""
        keys_key = _keys.keys_key(self.prefix, run_id)
        operation = f"delete run {run_id}"
        session, client = await self._client(operation)
        # What this loop knows of the run's streams (lengths, cursors) goes too:
        # a run started afresh under the same id begins at position 0 again.
        session.forget(_keys.run_tag(self.prefix, run_id).encode() + b":")
        with self._errors(operation):
            members = await client.smembers(keys_key)
            await client.delete(
                [
                    *members,
                    keys_key,
                    _keys.meta_key(self.prefix, run_id),
                    _keys.claims_key(self.prefix, run_id),
                ]
            )
            await client.zrem(_keys.runs_key(self.prefix), [run_id])

    async def aclose(self) -> None:
        """Close the connections; a later call connects again."""
        with self._sessions_lock:
            sessions, self._sessions = list(self._sessions.values()), {}
        for session in sessions:
            await session.close()


def _parse_entries(reply: list[Any], offset: int) -> Batch:
    """Turn the read script's flat ``[id, count, data, ...]`` list into a batch.

    The triples start at ``reply[offset]``.
    """
    chunks: list[Chunk] = []
    end: StreamState | None = None
    for i in range(offset, len(reply), 3):
        stop = int(reply[i].partition(b"-")[0])
        count = int(reply[i + 1])
        if count >= 0:
            chunks.append(Chunk(stop - count, count, reply[i + 2]))
        else:  # the end marker, always the stream's last entry
            end = StreamState(stop, True, reply[i + 2] if count == -2 else None)
    return Batch(chunks, end)
