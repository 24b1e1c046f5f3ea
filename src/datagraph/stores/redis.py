"""The Redis/Valkey store: run data shared by every process that can reach a server.

Streams are Redis Streams holding one entry per appended batch. An entry's id encodes
the position just past its batch (``<end>-0``), so ids grow with positions, the server
itself rejects out-of-order ids, and a reader at position ``p`` asks for the entries
after ``<p>-0``. The end of a stream is the entry ``<length>-1``, right after its last
batch. Appends and ends are Lua scripts, so checking a stream's length and writing it
is one atomic step however many producers race.

Readers' cursors and groups' cursors share one hash per stream (reader or group name
-> position). The read script records a reader's cursor in the same call, and the
take script moves a group's cursor past the values it hands out, so both stay one
round trip. Trimming (XTRIM MINID) never drops the end marker, and a stream trimmed
empty still knows its length: Redis keeps the id of its last entry (XINFO STREAM
``last-generated-id``), which is also why new appends still need higher ids.

Blocking reads share connections. A Redis connection that runs ``XREAD BLOCK`` can
serve nothing else until it returns (measured with valkey-glide 2.6: a PING sent on
the same multiplexed client waited out the whole block), so each event loop uses two
clients: a multiplexed one for every ordinary command, and one dedicated to a single
``XREAD BLOCK`` that watches every stream this process is waiting for. No background
task runs it: the first blocked reader becomes the *leader* and issues that XREAD on
behalf of all the others, wakes those whose streams changed, and hands the role to
another blocked reader when its own read is served. A reader that starts waiting for
a stream the current XREAD does not cover interrupts it by writing to this process's
private *wake* stream (part of every XREAD), which is race-free where ``CLIENT
UNBLOCK`` is not, and needs no admin permission. Writes made through this store object
wake its own readers directly, without a round trip.
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

from .. import _keys
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
    from collections.abc import Iterator, Mapping, Sequence

__all__ = ("RedisStore",)

_DEFAULT_URL = "redis://localhost:6379/0"
_DEFAULT_RETENTION = 7 * 24 * 3600.0
#: Most entries (batches) one read returns, and the size at which it stops adding
#: more: a reader's memory stays bounded when batches are large.
_READ_COUNT = 512
_READ_BYTES = 8 * 1024 * 1024
#: Longest single XREAD BLOCK; a longer wait simply issues another one.
_MAX_BLOCK_MS = 10_000
#: Time allowed for one ordinary command, reconnection included (glide's default
#: of 250 ms is too short for multi-megabyte batches).
_REQUEST_TIMEOUT_MS = 5_000
#: How long a process's wake stream outlives its last use (it is tiny).
_WAKE_TTL_MS = 3_600_000

# ----------------------------------------------------------------------------- Lua
# Shared by the scripts below. KEYS[1] is always the key the script is about and
# KEYS[2] (when used) the run's key set.
_LUA_LIB = """
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
  if string.sub(id, dash + 1) ~= '1' then return length, false, nil end
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
"""

# ARGV: start, stop (= start + count), count, data, ttl_ms.
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
return {0, stop, touch(KEYS[1], ARGV[5])}
"""
)

# ARGV: ttl_ms, has_error ('0'/'1'), error. Returns {ended_now, length, fresh}.
_END_LUA = (
    _LUA_LIB
    + """
local length, ended = last_entry(KEYS[1])
if ended then return {0, length, 0} end
local id = string.format('%d-1', length)
if ARGV[2] == '1' then
  redis.call('XADD', KEYS[1], id, 'end', '1', 'error', ARGV[3])
else
  redis.call('XADD', KEYS[1], id, 'end', '1')
end
return {1, length, touch(KEYS[1], ARGV[1])}
"""
)

# ARGV: count, data, ttl_ms. Returns {status, length (= the batch's start), fresh};
# status 0 written (or nothing to write), 2 ended.
_APPEND_AT_END_LUA = (
    _LUA_LIB
    + """
local length, ended = last_entry(KEYS[1])
if ended then return {2, length, 0} end
local count = tonumber(ARGV[1])
if count == 0 then return {0, length, 0} end
redis.call('XADD', KEYS[1], string.format('%d-0', length + count),
           'n', ARGV[1], 'd', ARGV[2])
return {0, length, touch(KEYS[1], ARGV[3])}
"""
)

# KEYS: the stream, and with a reader also the run's key set and the stream's
# cursors. ARGV: position, max entries, max bytes, and with a reader its name and
# ttl_ms. Returns {fresh, ...}: fresh is 1 when recording the cursor started the
# run's key set. The rest is a flat list of triples {id, count, data} in order,
# where an end marker has count -1 (no error, data '') or -2 (data = the error).
# With nothing past the position, the rest is the end marker triple if the stream
# has ended, else {length}.
_READ_LUA = (
    _LUA_LIB
    + """
local fresh = 0
if ARGV[4] then
  -- Record the reader's cursor, only ever moving it forward.
  local old = redis.call('HGET', KEYS[3], ARGV[4])
  if not old or tonumber(old) < tonumber(ARGV[1]) then
    redis.call('HSET', KEYS[3], ARGV[4], ARGV[1])
    fresh = touch(KEYS[3], ARGV[5])
  end
end
local cursor = '(' .. ARGV[1] .. '-0'
local max_count, max_bytes = tonumber(ARGV[2]), tonumber(ARGV[3])
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
if not ended then return {fresh, length} end
if err then return {fresh, string.format('%d-1', length), -2, err} end
return {fresh, string.format('%d-1', length), -1, ''}
"""
)

# KEYS: the stream, the run's key set, the stream's cursors. ARGV: group,
# max_count, ttl_ms. The group's cursor is the position of its next value; the
# entry after it holds that value (or, its positions trimmed, the next one held).
# Returns one of
#   {0, cursor, length}                       nothing to take yet
#   {1, start, stop, entry end, count, data, fresh}   positions start..stop-1 taken
#   {2, cursor, length, has_error, error}    the stream ended, the group took all
_TAKE_LUA = (
    _LUA_LIB
    + """
local cursor = tonumber(redis.call('HGET', KEYS[3], ARGV[1]) or '0')
local entries = redis.call('XRANGE', KEYS[1], string.format('(%d-0', cursor), '+',
                           'COUNT', 1)
if #entries == 0 then return {0, cursor, (last_entry(KEYS[1]))} end
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

# KEYS[1]: the wake stream; ARGV: ttl_ms.
_WAKE_LUA = """
redis.call('XADD', KEYS[1], 'MAXLEN', '1', '*', 'wake', '1')
redis.call('PEXPIRE', KEYS[1], ARGV[1])
"""

_APPENDED, _HELD, _CLOSED, _GAP = 0, 1, 2, 3
_NOTHING, _TAKEN, _ALL_TAKEN = 0, 1, 2


def _script(code: str) -> Any:
    return Script(code)  # type: ignore[no-untyped-call]  # glide leaves it untyped


class _Scripts:
    """The Lua scripts, registered with glide when first needed."""

    _lock = threading.Lock()
    _loaded: _Scripts | None = None

    def __init__(self) -> None:
        self.append = _script(_APPEND_LUA)
        self.end = _script(_END_LUA)
        self.read = _script(_READ_LUA)
        self.append_at_end = _script(_APPEND_AT_END_LUA)
        self.take = _script(_TAKE_LUA)
        self.trim = _script(_TRIM_LUA)
        self.state = _script(_STATE_LUA)
        self.set_fields = _script(_SET_FIELDS_LUA)
        self.claim = _script(_CLAIM_LUA)
        self.wake = _script(_WAKE_LUA)

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
    """One blocked read: a stream key and the position it needs values after."""

    __slots__ = ("event", "key", "position", "woken")

    def __init__(self, key: bytes, position: int) -> None:
        self.key = key
        self.position = position
        self.event = anyio.Event()
        #: Set when the stream may hold what it waits for; the read then re-reads.
        #: An event set while this stays False hands over the leader's role.
        self.woken = False


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
        self.blocker: Any = None  # GlideClient: the one XREAD BLOCK, lazily
        self.wake_key = _keys.wake_key(store.prefix, uuid.uuid4().hex).encode()
        self.wake_id = b"0-0"  # the last wake entry seen
        self.waiters: dict[bytes, list[_Waiter]] = {}
        self.leader: _Waiter | None = None
        self.successor: _Waiter | None = None  # told to take over the leader's role
        #: What the leader's XREAD in flight waits for: key -> position.
        self.watching: dict[bytes, int] | None = None
        self.woke_leader = False  # a wake entry was sent for the XREAD in flight
        self.stale_block = False  # an abandoned XREAD may still block the server

    async def connect(self, operation: str) -> Any:
        """Return the multiplexed client, connecting on first use for ``operation``."""
        if self.client is None:
            async with self.lock:
                if self.client is None:
                    with self.store._errors(operation):
                        self.client = await GlideClient.create(
                            self.store._config("datagraph")
                        )
        return self.client

    async def close(self) -> None:
        """Close both clients (safe from any event loop, and more than once)."""
        clients, self.client, self.blocker = (self.client, self.blocker), None, None
        for client in clients:
            if client is not None:
                # close() never awaits, so it works after the loop that made the
                # client is gone; it may still complain about that loop's futures.
                with contextlib.suppress(Exception):
                    await client.close()

    # -- waking ------------------------------------------------------------------
    def wake(self, key: bytes) -> None:
        """Wake every reader blocked on ``key`` (a write here changed it)."""
        for waiter in self.waiters.get(key, ()):
            waiter.woken = True
            waiter.event.set()

    def _add(self, waiter: _Waiter) -> None:
        self.waiters.setdefault(waiter.key, []).append(waiter)

    def _remove(self, waiter: _Waiter) -> None:
        waiters = self.waiters[waiter.key]
        waiters.remove(waiter)
        if not waiters:
            del self.waiters[waiter.key]
        if self.successor is waiter:
            self.successor = None
        self._hand_off()

    def _hand_off(self) -> None:
        """Make sure some blocked reader leads, when one is left to."""
        if self.leader is not None or self.successor is not None:
            return
        for waiters in self.waiters.values():
            for waiter in waiters:
                if not waiter.woken:
                    self.successor = waiter
                    waiter.event.set()
                    return

    def _covers(self, waiter: _Waiter) -> bool:
        watching = self.watching
        if watching is None:
            # Between two XREADs: the leader's next one will include this waiter.
            return True
        position = watching.get(waiter.key)
        return position is not None and position <= waiter.position

    async def _interrupt(self, *, force: bool = False) -> None:
        """Make the leader's XREAD return by writing to the wake stream."""
        if self.woke_leader and not force:
            return
        self.woke_leader = True
        operation = "interrupt a blocked read"
        try:
            client = await self.connect(operation)
            with self.store._errors(operation):
                await client.invoke_script(
                    self.store._scripts.wake,
                    keys=[self.wake_key],
                    args=[str(_WAKE_TTL_MS)],
                )
        except BaseException:
            self.woke_leader = False  # let the next blocked reader try again
            raise

    async def wait(self, key: bytes, position: int, deadline: float) -> None:
        """Block until ``key`` may hold entries after ``position``, or ``deadline``.

        May return early (the caller re-reads and, if need be, waits again).
        """
        me = _Waiter(key, position)
        self._add(me)
        try:
            while not me.woken and anyio.current_time() < deadline:
                if self.leader is None:
                    await self._lead(me, deadline)
                    continue
                if not self._covers(me):
                    await self._interrupt()
                with anyio.move_on_at(deadline):
                    await me.event.wait()
                if self.successor is me:
                    self.successor = None
                if not me.woken:  # asked to lead: loop round and take the role
                    me.event = anyio.Event()
        finally:
            self._remove(me)

    async def _lead(self, me: _Waiter, deadline: float) -> None:
        """Run XREAD BLOCK for every blocked reader until ``me`` is served."""
        self.leader = me
        if self.successor is me:
            self.successor = None
        try:
            if self.blocker is None:
                with self.store._errors("wait for new values"):
                    self.blocker = await GlideClient.create(
                        self.store._config("datagraph-wait")
                    )
            if self.stale_block:
                # A leader was cancelled mid-XREAD; the server may still be holding
                # it, and our next command would queue behind it on that connection.
                await self._interrupt(force=True)
                self.stale_block = False
            while not me.woken:
                remaining = deadline - anyio.current_time()
                if remaining <= 0:
                    return
                # deadline may be infinite: clamp before converting to an int
                await self._block_once(math.ceil(min(remaining * 1000, _MAX_BLOCK_MS)))
        finally:
            self.leader = None
            self._hand_off()

    async def _block_once(self, block_ms: int) -> None:
        watching: dict[bytes, int] = {}
        for key, waiters in self.waiters.items():
            positions = [w.position for w in waiters if not w.woken]
            if positions:
                watching[key] = min(positions)
        ids: dict[bytes, bytes] = {
            key: b"%d-0" % position for key, position in watching.items()
        }
        ids[self.wake_key] = self.wake_id
        self.watching, self.woke_leader = watching, False
        try:
            with self.store._errors("wait for new values"):
                reply = await self.blocker.xread(
                    ids, StreamReadOptions(block_ms=max(block_ms, 1), count=1)
                )
        except BaseException:
            self.stale_block = True
            raise
        finally:
            self.watching = None
        for key, entries in (reply or {}).items():
            if key == self.wake_key:
                self.wake_id = list(entries)[-1]
            else:
                self.wake(key)


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

    @contextlib.contextmanager
    def _errors(self, operation: str) -> Iterator[None]:
        """Re-raise the client's errors as ``StoreConnectionError``/``StoreError``."""
        try:
            yield
        except (ClosingError, GlideConnectionError, GlideTimeoutError) as exc:
            detail = str(exc).strip()
            msg = f"cannot reach Redis at {self.url} to {operation}: {detail}"
            raise StoreConnectionError(msg) from exc
        except GlideError as exc:
            detail = str(exc).strip()
            msg = f"Redis at {self.url} failed to {operation}: {detail}"
            raise StoreError(msg) from exc

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
        session = await self._session()
        return session, await session.connect(operation)

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
        key = _keys.stream_key(self.prefix, run_id, stream)
        operation = f"append to stream {stream!r} of run {run_id}"
        session, client = await self._client(operation)
        with self._errors(operation):
            status, length, fresh = await client.invoke_script(
                self._scripts.append,
                keys=[key, _keys.keys_key(self.prefix, run_id)],
                args=[str(start), str(start + count), str(count), data, self._ttl_ms],
            )
        if fresh:
            await self._index(client, run_id)
        if status == _APPENDED:
            session.wake(key.encode())
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
        key = _keys.stream_key(self.prefix, run_id, stream)
        operation = f"end stream {stream!r} of run {run_id}"
        session, client = await self._client(operation)
        args = [self._ttl_ms, "0" if error is None else "1", error or b""]
        with self._errors(operation):
            ended, _, fresh = await client.invoke_script(
                self._scripts.end,
                keys=[key, _keys.keys_key(self.prefix, run_id)],
                args=args,
            )
        if fresh:
            await self._index(client, run_id)
        if ended:
            session.wake(key.encode())
        return bool(ended)

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
        key = _keys.stream_key(self.prefix, run_id, stream)
        operation = f"append to stream {stream!r} of run {run_id}"
        session, client = await self._client(operation)
        with self._errors(operation):
            status, start, fresh = await client.invoke_script(
                self._scripts.append_at_end,
                keys=[key, _keys.keys_key(self.prefix, run_id)],
                args=[str(count), data, self._ttl_ms],
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
            session.wake(key.encode())
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
        The script that reads also records ``reader``'s cursor.
        """
        key = _keys.stream_key(self.prefix, run_id, stream)
        deadline = anyio.current_time() + max(timeout, 0.0)
        operation = f"read stream {stream!r} of run {run_id}"
        session, client = await self._client(operation)
        keys = [key]
        args = [str(position), str(_READ_COUNT), str(_READ_BYTES)]
        if reader is not None:
            keys += (
                _keys.keys_key(self.prefix, run_id),
                _keys.cursors_key(self.prefix, run_id, stream),
            )
            args += (reader, self._ttl_ms)
        while True:
            with self._errors(operation):
                reply = await client.invoke_script(
                    self._scripts.read, keys=keys, args=args
                )
            if reply[0]:  # the cursor was the run's first key
                await self._index(client, run_id)
            if len(reply) > 2:
                return _parse_entries(reply, 1)
            if anyio.current_time() >= deadline:
                return Batch(())
            # Wait for entries past what the stream holds now: a reader asking
            # beyond the end must still hear that the stream ended.
            length = int(reply[1])
            await session.wait(key.encode(), min(position, length), deadline)

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
        key = _keys.stream_key(self.prefix, run_id, stream)
        deadline = anyio.current_time() + max(timeout, 0.0)
        operation = f"take from stream {stream!r} of run {run_id} for {group!r}"
        session, client = await self._client(operation)
        keys = [
            key,
            _keys.keys_key(self.prefix, run_id),
            _keys.cursors_key(self.prefix, run_id, stream),
        ]
        args = [group, str(max(max_count, 1)), self._ttl_ms]
        while True:
            with self._errors(operation):
                reply = await client.invoke_script(
                    self._scripts.take, keys=keys, args=args
                )
            if reply[0] == _TAKEN:
                _, start, stop, end, count, data, fresh = reply
                if fresh:
                    await self._index(client, run_id)
                return Share(Chunk(end - count, count, data), start, stop)
            cursor, length = int(reply[1]), int(reply[2])
            if reply[0] == _ALL_TAKEN:
                error = reply[4] if reply[3] else None
                return Share(None, cursor, cursor, StreamState(length, True, error))
            if anyio.current_time() >= deadline:
                return Share(None, cursor, cursor)
            await session.wait(key.encode(), min(cursor, length), deadline)

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
        _, client = await self._client(operation)
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
