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
holds (it lasts ``WATCH_TTL_MS`` and is renewed well before by reading again),
waits without asking the server at all. A flow running in one process thus costs
one round trip per batch and stage, the append. (The scripts write to wake streams
they do not declare as keys, which a standalone server allows.)

On a Redis Cluster (``redis+cluster://`` URLs) every key of a run is in the run's
slot and every script touches only keys it declares, all of that slot, so the
wake streams above (each in a slot of its own) are out. There a session's wake
name is a pub/sub *channel*: the scripts ``PUBLISH`` the changed stream's key on
the channels of the registered sessions (a channel is no key; the cluster bus
carries the message to every node), and a dedicated client of the session,
subscribed to its channel before its first registration, wakes the readers from
glide's message callback. Pub/sub keeps no backlog: a message sent while that
client reconnects is lost, and the reader finds the change when it renews its
registration (``_RENEW_S``) at the latest.

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
import functools
import math
import re
import threading
import time
import uuid
from typing import TYPE_CHECKING, Any, Self
from urllib.parse import unquote, urlsplit

import anyio
import anyio.lowlevel

from .. import _background, _keys
from ..exceptions import (
    CorruptDataError,
    StoreConnectionError,
    StoreError,
    StreamClosedError,
)
from ._base import Batch, Chunk, Share, Store, StreamState
from ._limits import DEFAULT_MAX_VALUE_SIZE, check_max_value_size, value_too_large
from ._redis_access import ca_file_from_query, denied, is_denied, tls_config
from ._redis_entries import foreign_entry, parse_entries
from ._redis_lua import (
    ALL_TAKEN,
    APPENDED,
    CLOSED,
    FOREIGN,
    GAP,
    HELD,
    LOST,
    TAKEN,
    WAKE_COUNT,
    WATCH_TTL_MS,
    Scripts,
)

try:
    from glide import (
        AdvancedGlideClientConfiguration,
        AdvancedGlideClusterClientConfiguration,
        BackoffStrategy,
        ClosingError,
        ClusterBatch,
        GlideClient,
        GlideClientConfiguration,
        GlideClusterClient,
        GlideClusterClientConfiguration,
        GlideError,
        LogLevel,
        NodeAddress,
        PubSubMsg,
        ServerCredentials,
        StreamReadOptions,
    )
    from glide import Batch as GlideBatch
    from glide import ConnectionError as GlideConnectionError
    from glide import Logger as GlideLogger
    from glide import TimeoutError as GlideTimeoutError
except ImportError as exc:  # pragma: no cover - depends on the installed extras
    msg = "RedisStore needs the valkey-glide client: pip install 'datagraph[redis]'"
    raise ImportError(msg) from exc

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence

__all__ = ("RedisStore",)

_DEFAULT_URL = "redis://localhost:6379/0"
_DEFAULT_RETENTION = 7 * 24 * 3600.0
_DEFAULT_STORE_TIMEOUT = 60.0
_DEFAULT_COMMAND_TIMEOUT = 5.0
_LOG_LEVELS = {
    "off": LogLevel.OFF,
    "error": LogLevel.ERROR,
    "warn": LogLevel.WARN,
    "info": LogLevel.INFO,
    "debug": LogLevel.DEBUG,
}
#: Longest single XREAD BLOCK; a longer wait simply issues another one.
_MAX_BLOCK_MS = 10_000
#: How often a reader still waiting renews its registration (by reading again).
_RENEW_S = 10.0
#: How long after a registration this process still counts on it (a safe margin
#: below ``WATCH_TTL_MS``, which runs on the server's clock).
_WATCHED_S = WATCH_TTL_MS / 1000 - _RENEW_S
#: Most batches appended here that a blocked reader of this loop may take directly.
_HANDED_CHUNKS = 4
#: Streams whose keys a store remembers (it forgets them all past that).
_KEYS_CACHED = 4096
#: Stream keys a session follows between reads before it forgets idle ones.
_TRACKED_KEYS = 1024
#: Pauses of the wake watcher after a failed XREAD, doubling up to the second.
_RETRY_FIRST_S = 0.05
_RETRY_MAX_S = 1.0
#: Entries with more data than this travel on connections of their own (one per
#: command in flight), each allowed time in proportion to ``max_value_size``: a
#: large command neither waits behind nor delays the small ones of other runs.
_BULK_BYTES = 1024 * 1024
#: The slowest transfer rate a large command is given time for (bytes/s).
_SLOWEST_RATE = 16 * 1024 * 1024
#: Idle large-command connections a session keeps for the next ones.
_BULK_IDLE = 2
#: Longest wait to open a connection (glide's default is 2 s).
_CONNECT_TIMEOUT_MS = 1_000


def _watchers_key(prefix: str, run_id: str, stream: str) -> str:
    """Return the key of the hash of processes waiting for a stream to change.

    Fields are wake stream keys, values the server time (ms) a registration ends.
    It expires on its own shortly after the last registration, so it is not in the
    run's key set (a blocked read must not index a run that does not exist yet).
    """
    return f"{_keys.run_tag(prefix, run_id)}:w:{stream}"


def _tokens_key(prefix: str, run_id: str, stream: str) -> str:
    """Return the key of the hash of a stream's call tokens.

    ``append_at_end`` and ``take`` record what each call did under a token of the
    call until the caller has the answer, so a call retried after a lost answer
    is answered the same (see ``RedisStore._call``). In the run's key set.
    """
    return f"{_keys.run_tag(prefix, run_id)}:t:{stream}"


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
    #: A Redis Cluster, reached first through ``seeds`` (host, port), any node.
    cluster: bool = False
    seeds: tuple[tuple[str, int], ...] = ()
    ca_file: str | None = None  # TLS: the CA that signed the server's certificate

    @property
    def safe_url(self) -> str:
        """The URL without the password, fit for messages and logs."""
        scheme = "rediss" if self.tls else "redis"
        user = f"{self.username}@" if self.username else ""
        query = f"?ssl_ca_certs={self.ca_file}" if self.ca_file else ""
        if self.cluster:
            nodes = ",".join(_host_port(host, port) for host, port in self.seeds)
            return f"{scheme}+cluster://{user}{nodes}{query}"
        host_port = _host_port(self.host, self.port)
        return f"{scheme}://{user}{host_port}/{self.db}{query}"


def _host_port(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _parse_url(url: str) -> _Address:
    """Parse ``redis://[[user]:password@]host[:port][/db]`` (``rediss://`` for TLS).

    A Redis Cluster is ``redis+cluster://[[user]:password@]host[:port][,host[:port]
    ...]`` (``rediss+cluster://`` for TLS): any of its nodes, to find the others.
    A ``rediss://`` URL may end in ``?ssl_ca_certs=<path>``, the CA file to trust.

    Raises:
        ValueError: the URL has another scheme or a malformed port or db number.
        StoreConfigError: the query is not a lone ``ssl_ca_certs`` of a TLS URL.
    """
    scheme = url.partition("://")[0]
    if scheme in ("redis+cluster", "rediss+cluster"):
        return _parse_cluster_url(url)
    parts = urlsplit(url)
    if parts.scheme not in ("redis", "rediss"):
        msg = (
            "a Redis URL starts with redis:// or rediss:// (TLS), or "
            f"redis+cluster:// or rediss+cluster:// for a Redis Cluster, got {url!r}"
        )
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
        ca_file=ca_file_from_query(parts.query, tls=parts.scheme == "rediss"),
    )


def _parse_cluster_url(url: str) -> _Address:
    """Parse a ``redis+cluster://`` URL: one or more nodes, database 0 only."""
    seeds: list[tuple[str, int]] = []
    first = None
    for node in url.partition("://")[2].split(","):
        # Each node as a URL of its own: user and password come with the first.
        parts = urlsplit(f"redis://{node}")
        if first is None:
            first = parts
        elif parts.username or parts.password:
            msg = f"only the first node of a cluster URL may hold a login: {url!r}"
            raise ValueError(msg)
        try:
            port = parts.port or 6379
        except ValueError:
            msg = f"invalid port in Redis Cluster URL {url!r}"
            raise ValueError(msg) from None
        if parts.path.strip("/") not in ("", "0"):
            msg = f"a Redis Cluster has only database 0, got {url!r}"
            raise ValueError(msg)
        if not parts.hostname:
            msg = f"a Redis Cluster URL names host:port of each node, got {url!r}"
            raise ValueError(msg)
        seeds.append((parts.hostname, port))
    assert first is not None
    return _Address(
        host=seeds[0][0],
        port=seeds[0][1],
        db=0,
        tls=url.startswith("rediss+"),
        username=unquote(first.username) if first.username else None,
        password=unquote(first.password) if first.password is not None else None,
        cluster=True,
        seeds=tuple(seeds),
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
        self.length, self.length_version = chunk.stop, self.version
        for reader in moved:
            self.cursors[reader] = max(self.cursors.get(reader, 0), chunk.stop)
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
                position = chunk.stop
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


async def _closer(client: Any) -> None:
    with contextlib.suppress(Exception):
        await client.close()


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
        #: GlideClient: XREAD BLOCK on the wake stream; on a cluster, the
        #: GlideClusterClient subscribed to the wake channel.
        self.blocker: Any = None
        self.bulk: list[Any] = []  # idle GlideClients for large commands
        #: Tokens of ``append_at_end``/``take`` calls answered, by tokens key: the
        #: next call on that key tells the server to forget them.
        self.acks: dict[str, list[str]] = {}
        self.wake_key = _keys.wake_key(store.prefix, uuid.uuid4().hex).encode()
        self.wake_id = b"0-0"  # the last wake entry seen
        self.tracked: dict[bytes, _Tracked] = {}
        self.waiting = 0  # blocked reads
        self.watching = False  # the task that reads the wake stream runs
        self.closed = False

    async def connect(self) -> Any:
        """Return the multiplexed client, connecting on first use."""
        if self.client is None:
            async with self.lock:
                if self.client is None:
                    self.client = await self._open("datagraph")
            if self.store.address.cluster:
                # Subscribed from the start: a first blocked read then costs
                # one round trip, as on a standalone server.
                await self.listen()
        return self.client

    async def _open(
        self, name: str, timeout_ms: int | None = None, *, listen: bool = False
    ) -> Any:
        config = self.store._config(name, timeout_ms, self._heard if listen else None)
        kind = GlideClusterClient if self.store.address.cluster else GlideClient
        client = await kind.create(config)
        self.store._reached = True
        if self.closed:  # closed while connecting: no one else would close it
            with contextlib.suppress(Exception):
                await client.close()
            msg = f"the store for {self.store.url} was closed"
            raise StoreConnectionError(msg)
        return client

    async def listen(self) -> None:
        """On a cluster, subscribe to this loop's wake channel (once).

        Done before the first read script registers the channel: a message
        published before the subscription holds would be lost.
        """
        if self.blocker is not None:
            return
        async with self.lock:
            if self.blocker is None:
                client = await self._open("datagraph-wait", listen=True)
                try:
                    await client.subscribe(
                        {self.wake_key.decode()}, timeout_ms=self.store._timeout_ms
                    )
                except BaseException:
                    _background.spawn(functools.partial(_closer, client))
                    raise
                self.blocker = client

    def _heard(self, message: PubSubMsg, _context: object) -> None:
        # glide calls this in the event loop's thread, between its tasks.
        if isinstance(message.message, bytes):
            self.wake(message.message)

    def discard(self, client: Any) -> None:
        """Stop using a client that glide has closed; the next command reconnects."""
        if self.client is client:
            self.client = None
        _background.spawn(functools.partial(_closer, client))

    @contextlib.asynccontextmanager
    async def bulk_client(self) -> AsyncIterator[Any]:
        """Lend a connection of its own to one large command."""
        client = self.bulk.pop() if self.bulk else None
        if client is None:
            client = await self._open("datagraph-bulk", self.store._bulk_timeout_ms)
        try:
            yield client
        except BaseException:
            # Closed, timed out (a late reply may still come) or cancelled: its
            # state is unknown, so it serves no other command.
            _background.spawn(functools.partial(_closer, client))
            raise
        if len(self.bulk) < _BULK_IDLE and not self.closed:
            self.bulk.append(client)
        else:
            _background.spawn(functools.partial(_closer, client))

    def acknowledge(self, tokens_key: str, token: str) -> None:
        """Note that the answer of the call ``token`` arrived.

        Never dropped: the record of a share not acknowledged holds back trim.
        There are about as many as the loop's members of one group.
        """
        self.acks.setdefault(tokens_key, []).append(token)

    def take_acks(self, tokens_key: str) -> list[str]:
        """Return (and forget) the answered calls the next call reports."""
        return self.acks.pop(tokens_key, [])

    async def close(self) -> None:
        """Close every client (safe from any event loop, and more than once)."""
        self.closed = True
        clients = (self.client, self.blocker, *self.bulk)
        self.client, self.blocker, self.bulk = None, None, []
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
        if not self.watching and not self.store.address.cluster:
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
                except Exception as exc:
                    if isinstance(exc, ClosingError):
                        self.blocker = None  # glide gave up on it: open another
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
                if len(entries) >= WAKE_COUNT:
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
            StreamReadOptions(block_ms=_MAX_BLOCK_MS, count=WAKE_COUNT),
        )


#: What glide says when a first connection fails, and what Datagraph says then.
_CONNECT_FAILURES = (
    ("refused", "connection refused (is the server running, on this port?)"),
    ("lookup address", "unknown host"),
    ("name or service not known", "unknown host"),
    ("wrongpass", "authentication failed (wrong user name or password)"),
    ("noauth", "authentication failed (the server wants a password)"),
    ("auth", "authentication failed"),
    (
        "unknownissuer",
        "TLS: the server's certificate is not signed by a trusted CA "
        "(name its CA file: rediss://...?ssl_ca_certs=<path>)",
    ),
    ("invalid peer certificate", "TLS: the server's certificate was refused"),
    # What a TLS port does to a client that does not speak TLS.
    (
        "unexpectedly terminated",
        "the server closed the connection at once (a TLS port? then use rediss://)",
    ),
)


def _connect_failure(exc: Exception) -> str | None:
    """Say why a connection failed for good (refused, unknown host, login), if so."""
    detail = str(exc).lower()
    for needle, reason in _CONNECT_FAILURES:
        if needle in detail:
            return reason
    return None


#: Server errors that pass: retried like a stalled server (loading its data after
#: a restart, busy with a long script, a replica promoted, a cluster healing).
_TRANSIENT = re.compile(r"\b(LOADING|BUSY|TRYAGAIN|MASTERDOWN|READONLY|CLUSTERDOWN)\b")
#: Errors of a script that met data of another shape than it wrote: a key of
#: another type, or Lua tripping on a field (arithmetic on nil, ...).
_FOREIGN_DATA = re.compile(r"WRONGTYPE|user_script:\d+: (attempt to|bad argument)")


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


@dataclasses.dataclass(frozen=True, slots=True)
class _StreamKeys:
    """The keys a value stream's commands use, worked out once per stream."""

    stream: str
    tracked: bytes  # the stream's key as a session tracks it
    keyset: str
    cursors: str
    watchers: str
    tokens: str
    blobs: str  # sorted set: blob key by the position its batch ends at
    blob_prefix: str  # a blob key is this plus a random token

    def blob(self) -> str:
        """Return a new key for the data of one large batch."""
        return self.blob_prefix + uuid.uuid4().hex


# ------------------------------------------------------------------- the store
class RedisStore(Store):
    """Keep run data in Redis (>= 7.0) or Valkey (>= 7.2), shared by many processes.

    Connects on first use, inside the running event loop, and again from any other
    event loop the store is later used in (asyncio or trio). Every write refreshes
    the expiry of the keys it touches, so a run's data is deleted ``retention``
    seconds after it was last written.

    A command that gets no answer (the server is stalled, restarting or out of
    reach) is retried until ``store_timeout`` seconds have passed since it was
    first sent, then ``StoreConnectionError`` is raised. Every command is safe to
    send twice: appends are idempotent by position, and the calls that are not
    (``append_at_end``, ``take``, ``claim``) carry a token that lets the server
    answer a retry the way it answered the first attempt. A first connection that
    is refused, names an unknown host or fails to log in fails at once.

    Args:
        url: ``redis://[[user]:password@]host[:port][/db]``; ``rediss://`` for TLS,
            then ``?ssl_ca_certs=<path>`` to trust the CA in that file.
            A Redis Cluster: ``redis+cluster://[[user]:password@]host[:port]
            [,host[:port]...]`` naming any of its nodes (``rediss+cluster://``
            for TLS); glide's cluster client finds the others.
        prefix: first part of every key, to share a server between applications.
        retention: seconds that run data outlives its last write.
        store_timeout: seconds a command is retried before the server counts as
            unreachable.
        command_timeout: seconds one attempt of a small command may take; one
            carrying more than 1 MiB gets ``max_value_size / 16 MiB/s`` more.
        max_value_size: largest entry (encoded batch) in bytes; larger appends
            raise ``ValueTooLargeError``.
        client_log_level: level of glide's own log lines (``off``, ``error``,
            ``warn``, ``info``, ``debug``); ignored once glide's ``Logger`` is set
            up, by the application or by an earlier store.

    Raises:
        ValueError: an argument is not valid.
    """

    def __init__(
        self,
        url: str = _DEFAULT_URL,
        *,
        prefix: str = "dg",
        retention: float = _DEFAULT_RETENTION,
        store_timeout: float = _DEFAULT_STORE_TIMEOUT,
        command_timeout: float = _DEFAULT_COMMAND_TIMEOUT,
        max_value_size: int = DEFAULT_MAX_VALUE_SIZE,
        client_log_level: str = "off",
    ) -> None:
        for name, value in (
            ("retention", retention),
            ("store_timeout", store_timeout),
            ("command_timeout", command_timeout),
        ):
            if not value > 0:
                msg = f"{name} must be a positive number of seconds, got {value!r}"
                raise ValueError(msg)
        self.address = _parse_url(url)
        self._tls = tls_config(self.address.ca_file)
        self.prefix = _keys.check_prefix(prefix)
        self.retention = retention
        self.store_timeout = float(store_timeout)
        self.command_timeout = float(command_timeout)
        self.max_value_size = check_max_value_size(max_value_size)
        _quiet_client_log(client_log_level)
        self._ttl_ms = str(max(1, math.ceil(retention * 1000)))
        self._timeout_ms = max(1, math.ceil(command_timeout * 1000))
        self._bulk_timeout_ms = self._timeout_ms + math.ceil(
            1000 * self.max_value_size / _SLOWEST_RATE
        )
        self._scripts = Scripts.get(cluster=self.address.cluster)
        self._sessions: dict[object, _Session] = {}
        self._sessions_lock = threading.Lock()  # a store may serve loops in threads
        self._closed = False  # by aclose(): no new connections after it
        self._stream_keys: dict[tuple[str, str], _StreamKeys] = {}
        #: Whether any connection ever succeeded: a refused first connection is
        #: far likelier a wrong URL than a restart, so it is not retried.
        self._reached = False

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
    def _config(
        self,
        name: str,
        timeout_ms: int | None = None,
        on_message: Callable[[PubSubMsg, object], None] | None = None,
    ) -> Any:
        address = self.address
        credentials = None
        if address.password is not None:
            credentials = ServerCredentials(
                password=address.password, username=address.username
            )
        if address.cluster:
            subscriptions = None
            if on_message is not None:  # channels come later, by SUBSCRIBE
                subscriptions = GlideClusterClientConfiguration.PubSubSubscriptions(
                    channels_and_patterns={}, callback=on_message, context=None
                )
            return GlideClusterClientConfiguration(
                [NodeAddress(host, port) for host, port in address.seeds],
                use_tls=address.tls,
                credentials=credentials,
                request_timeout=timeout_ms or self._timeout_ms,
                client_name=name,
                reconnect_strategy=BackoffStrategy(
                    num_of_retries=0, factor=50, exponent_base=2
                ),
                pubsub_subscriptions=subscriptions,
                advanced_config=AdvancedGlideClusterClientConfiguration(
                    connection_timeout=min(_CONNECT_TIMEOUT_MS, self._timeout_ms)
                ),
            )
        return GlideClientConfiguration(
            [NodeAddress(address.host, address.port)],
            use_tls=address.tls,
            credentials=credentials,
            database_id=address.db,
            request_timeout=timeout_ms or self._timeout_ms,
            client_name=name,
            # No retries inside create(): a refused port fails at once. Once
            # connected, glide reconnects by itself without end, every 50 ms.
            reconnect_strategy=BackoffStrategy(
                num_of_retries=0, factor=50, exponent_base=2
            ),
            advanced_config=AdvancedGlideClientConfiguration(
                connection_timeout=min(_CONNECT_TIMEOUT_MS, self._timeout_ms),
                tls_config=self._tls,
            ),
        )

    async def _session(self) -> _Session:
        loop = anyio.lowlevel.current_token().native_token
        session = self._sessions.get(loop)  # the usual case: no lock, no await
        if session is not None:
            return session
        with self._sessions_lock:
            if self._closed:
                msg = f"the store for {self.url} was closed (RedisStore.aclose)"
                raise StoreConnectionError(msg)
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
        """Return this loop's session and its connected multiplexed client."""
        session = await self._session()
        client = await self._call(operation, _same)
        return session, client

    async def _call(
        self,
        operation: str,
        command: Callable[[Any], Awaitable[Any]],
        *,
        run_id: str | None = None,
        stream: str | None = None,
        size: int = 0,
    ) -> Any:
        """Run ``command(client)``, retrying it until ``store_timeout`` has passed.

        ``command`` must be safe to run twice (see the class). A command carrying
        more than ``_BULK_BYTES`` runs on a connection of its own. After a retry,
        the run (``run_id``) is indexed: the attempt that created its first key
        may have lost its answer, which says so.

        Raises:
            StoreConnectionError: no answer within ``store_timeout``, or a first
                connection failed for good (refused, unknown host, login).
            CorruptDataError: a key of the run holds another type of value.
            StoreError: the server refused the command.
        """
        session = await self._session()
        started = anyio.current_time()
        delay = _RETRY_FIRST_S
        attempts = 0
        while True:
            attempts += 1
            client = None
            try:
                if size > _BULK_BYTES:
                    async with session.bulk_client() as bulk:
                        result = await command(bulk)
                else:
                    client = session.client or await session.connect()
                    result = await command(client)
            except GlideError as exc:
                if is_denied(str(exc)):  # the ACL refuses: no retry will help
                    raise self._denied(exc, operation) from None
                transient = isinstance(
                    exc, GlideTimeoutError | GlideConnectionError | ClosingError
                ) or bool(_TRANSIENT.search(str(exc)))
                if not transient:
                    raise self._refused(exc, operation, run_id, stream) from exc
                if client is not None and isinstance(exc, ClosingError):
                    session.discard(client)
                if session.closed:
                    msg = f"the store for {self.url} was closed; cannot {operation}"
                    raise StoreConnectionError(msg) from None
                reason = None if self._reached else _connect_failure(exc)
                if reason is not None:
                    msg = f"cannot reach Redis at {self.url} to {operation}: {reason}"
                    raise StoreConnectionError(msg) from None
                waited = anyio.current_time() - started
                if waited >= self.store_timeout:
                    msg = (
                        f"cannot reach Redis at {self.url} to {operation}: no answer "
                        f"for {waited:.1f}s (store_timeout is {self.store_timeout:g}s)"
                        f"; last error: {_one_line(exc)}"
                    )
                    raise StoreConnectionError(msg) from exc
                await anyio.sleep(min(delay, self.store_timeout - waited))
                delay = min(delay * 2, _RETRY_MAX_S)
                continue
            if attempts > 1 and run_id is not None:
                await self._index(run_id)
            return result

    def _refused(
        self, exc: GlideError, operation: str, run_id: str | None, stream: str | None
    ) -> StoreError:
        """Return the store's error for a command the server refused."""
        detail = _one_line(exc)
        if run_id is not None and _FOREIGN_DATA.search(detail):
            what = f"stream {stream!r} of run {run_id}" if stream else f"run {run_id}"
            kind = (
                "a key of it holds another type of value than Datagraph wrote there"
                if "WRONGTYPE" in detail
                else "it holds data Datagraph did not write"
            )
            msg = f"cannot {operation}: {kind} ({what}): {detail}"
            return CorruptDataError(msg, run_id=run_id, stream=stream)
        return StoreError(f"Redis at {self.url} failed to {operation}: {detail}")

    def _denied(self, exc: GlideError, operation: str) -> StoreError:
        address = self.address
        return denied(
            _one_line(exc),
            user=address.username if address.password is not None else None,
            prefix=self.prefix,
            url=self.url,
            operation=operation,
        )

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
                tokens=_tokens_key(self.prefix, run_id, stream),
                blobs=f"{_keys.run_tag(self.prefix, run_id)}:b:{stream}",
                blob_prefix=f"{_keys.run_tag(self.prefix, run_id)}:v:{stream}:",
            )
        return found

    async def _index(self, run_id: str) -> None:
        """Add a run to the index of runs, keeping the time it was first seen."""
        command = ["ZADD", _keys.runs_key(self.prefix), "NX", repr(time.time()), run_id]
        await self._call(
            f"index run {run_id}", lambda client: client.custom_command(command)
        )

    def _check_size(self, run_id: str, stream: str, count: int, data: bytes) -> None:
        if len(data) > self.max_value_size:
            raise value_too_large(run_id, stream, count, len(data), self.max_value_size)

    async def _put_blob(
        self, keys: _StreamKeys, data: bytes, run_id: str, stream: str, operation: str
    ) -> str:
        """SET the data of a large batch in a key of its own; return the key.

        Sent on a connection of its own: the server reads it bit by bit between
        other clients' commands, and SET keeps it without a copy, where a script
        taking it as an argument would stall the server while it copies.
        """
        blob = keys.blob()
        command: list[str | bytes] = ["SET", blob, data, "PX", self._ttl_ms]
        await self._call(
            operation,
            lambda client: client.custom_command(command),
            run_id=run_id,
            stream=stream,
            size=len(data),
        )
        return blob

    async def _fetch(
        self, run_id: str, stream: str, blob: bytes, operation: str
    ) -> bytes:
        """Return the data of a large batch, read on a connection of its own."""
        data = await self._call(
            operation,
            lambda client: client.get(blob),
            run_id=run_id,
            stream=stream,
            size=self.max_value_size,
        )
        if data is None:
            msg = (
                f"a batch of stream {stream!r} of run {run_id} was trimmed or "
                "expired before this reader got it"
            )
            raise StoreError(msg)
        assert isinstance(data, bytes)
        return data

    # -- streams -----------------------------------------------------------------
    async def append(
        self, run_id: str, stream: str, start: int, count: int, data: bytes
    ) -> int:
        """Append a batch at ``start``; see ``Store.append``.

        Raises:
            ValueTooLargeError: ``data`` is over ``max_value_size``.
        """
        if start < 0 or count < 0:
            msg = f"start and count must not be negative, got {start} and {count}"
            raise ValueError(msg)
        self._check_size(run_id, stream, count, data)
        keys = self._keys_of(run_id, stream)
        session = await self._session()
        operation = f"append to stream {stream!r} of run {run_id}"
        script_keys = [
            keys.stream,
            keys.keyset,
            keys.watchers,
            keys.cursors,
            keys.blobs,
        ]
        payload = data
        if len(data) > _BULK_BYTES:
            blob = await self._put_blob(keys, data, run_id, stream, operation)
            script_keys.append(blob)
            payload = b""
        moved = session.readers_at(keys.tracked, start) if count else []
        args = [
            str(start),
            str(start + count),
            str(count),
            payload,
            self._ttl_ms,
            session.wake_key,
            *moved,
        ]
        status, length, fresh = await self._call(
            operation,
            lambda client: client.invoke_script(
                self._scripts.append, keys=script_keys, args=args
            ),
            run_id=run_id,
            stream=stream,
        )
        if fresh:
            await self._index(run_id)
        if status == APPENDED:
            session.wake(keys.tracked, Chunk(start, count, data), moved)
        elif status == HELD:
            # A retried attempt may have written it (and moved the cursors of the
            # readers blocked here): they read it back.
            session.wake(keys.tracked)
        elif status == CLOSED:
            msg = (
                f"stream {stream!r} of run {run_id} has ended after {length} values; "
                f"cannot append values {start} to {start + count - 1}"
            )
            raise StreamClosedError(msg)
        elif status == GAP:
            msg = (
                f"cannot append at position {start} to stream {stream!r} of run "
                f"{run_id}: it holds {length} values, so values {length} to "
                f"{start - 1} would be missing"
            )
            raise StoreError(msg)
        return int(length)

    async def end_stream(
        self, run_id: str, stream: str, error: bytes | None = None
    ) -> bool:
        """End the stream; see ``Store.end_stream``.

        A retry after a lost answer finds the stream ended and returns False,
        though the first attempt ended it.
        """
        keys = self._keys_of(run_id, stream)
        session = await self._session()
        args = [
            self._ttl_ms,
            "0" if error is None else "1",
            error or b"",
            session.wake_key,
        ]
        ended, _, fresh = await self._call(
            f"end stream {stream!r} of run {run_id}",
            lambda client: client.invoke_script(
                self._scripts.end_stream,
                keys=[keys.stream, keys.keyset, keys.watchers],
                args=args,
            ),
            run_id=run_id,
            stream=stream,
            size=len(error or b""),
        )
        if fresh:
            await self._index(run_id)
        session.wake(keys.tracked)
        return bool(ended)

    async def reopen(self, run_id: str, stream: str) -> bool:
        """Take back the stream's end; see ``Store.reopen``.

        A retry after a lost answer finds the stream open and returns False,
        though the first attempt reopened it.
        """
        keys = self._keys_of(run_id, stream)
        session = await self._session()
        reopened = await self._call(
            f"reopen stream {stream!r} of run {run_id}",
            lambda client: client.invoke_script(
                self._scripts.reopen,
                keys=[keys.stream, keys.keyset, keys.watchers],
                args=[self._ttl_ms, session.wake_key],
            ),
            run_id=run_id,
            stream=stream,
        )
        session.wake(keys.tracked)
        return bool(reopened)

    async def append_at_end(
        self, run_id: str, stream: str, count: int, data: bytes
    ) -> int:
        """Append a batch after the stream's last value; see ``Store.append_at_end``.

        One script checks the length and writes at it, so producers racing on one
        stream each get their own positions. The call's token makes a retry
        return the first attempt's position instead of writing the batch twice.

        Raises:
            ValueTooLargeError: ``data`` is over ``max_value_size``.
        """
        if count < 0:
            msg = f"count must not be negative, got {count}"
            raise ValueError(msg)
        self._check_size(run_id, stream, count, data)
        keys = self._keys_of(run_id, stream)
        session = await self._session()
        operation = f"append to stream {stream!r} of run {run_id}"
        script_keys = [keys.stream, keys.keyset, keys.watchers, keys.tokens, keys.blobs]
        payload = data
        if len(data) > _BULK_BYTES:
            blob = await self._put_blob(keys, data, run_id, stream, operation)
            script_keys.append(blob)
            payload = b""
        token = uuid.uuid4().hex
        args = [str(count), payload, self._ttl_ms, session.wake_key, token]
        args += session.take_acks(keys.tokens)
        status, start, fresh = await self._call(
            operation,
            lambda client: client.invoke_script(
                self._scripts.append_at_end, keys=script_keys, args=args
            ),
            run_id=run_id,
            stream=stream,
        )
        if fresh:
            await self._index(run_id)
        if status == CLOSED:
            msg = (
                f"stream {stream!r} of run {run_id} has ended after {start} values; "
                f"cannot append {count} more"
            )
            raise StreamClosedError(msg)
        if count:
            session.acknowledge(keys.tokens, token)
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
        An entry over 1 MiB ends the batch and is fetched on a connection of its
        own. The script that reads also records ``reader``'s cursor. A read where
        a batch appended through this store object ended, with nothing changed
        since, skips it: that append recorded the cursor here (see the module's
        docstring).

        Raises:
            CorruptDataError: the entry at ``position`` is not one Datagraph
                wrote (entries before it are returned first).
        """
        keys = self._keys_of(run_id, stream)
        operation = f"read stream {stream!r} of run {run_id}"
        session = await self._session()
        wait = timeout > 0
        deadline = anyio.current_time() + timeout if wait else 0.0
        args = [str(position), self._ttl_ms, session.wake_key if wait else b""]
        if reader is not None:
            args.append(reader)
        if wait and self.address.cluster:
            await self._call(operation, lambda _: session.listen())
        tracked = session.track(keys.tracked)
        try:
            now = anyio.current_time() if wait else 0.0
            # After a batch appended here, the server may hold nothing new to say.
            ask = not (wait and tracked.settled(position, reader, now))
            while True:
                seen = tracked.version
                if ask:
                    sent = now
                    reply = await self._call(
                        operation,
                        lambda client: client.invoke_script(
                            self._scripts.read,
                            keys=[
                                keys.stream,
                                keys.keyset,
                                keys.cursors,
                                keys.watchers,
                            ],
                            args=args,
                        ),
                        run_id=run_id,
                        stream=stream,
                    )
                    if reply[0]:  # the cursor was the run's first key
                        await self._index(run_id)
                    if len(reply) > 2:
                        return await self._entries(reply, run_id, stream, operation)
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

    async def _entries(
        self, reply: list[Any], run_id: str, stream: str, operation: str
    ) -> Batch:
        """Turn a read script's reply into a batch, fetching a large last entry."""
        parsed = parse_entries(reply, 1, run_id, stream)
        if parsed.large is None:
            return parsed.batch
        start, count, blob = parsed.large
        data = await self._fetch(run_id, stream, blob, operation)
        return Batch([*parsed.batch.chunks, Chunk(start, count, data)])

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
        many race. The share's chunk is the whole batch holding its values. The
        call's token makes a retry hand out the same share again.

        Raises:
            CorruptDataError: the next entry is not one Datagraph wrote.
        """
        keys = self._keys_of(run_id, stream)
        operation = f"take from stream {stream!r} of run {run_id} for {group!r}"
        session = await self._session()
        wait = timeout > 0
        deadline = anyio.current_time() + timeout if wait else 0.0
        if wait and self.address.cluster:
            await self._call(operation, lambda _: session.listen())
        tracked = session.track(keys.tracked)
        try:
            while True:
                seen = tracked.version
                token = uuid.uuid4().hex
                args = [
                    group,
                    str(max(max_count, 1)),
                    self._ttl_ms,
                    session.wake_key if wait else b"",
                    token,
                    *session.take_acks(keys.tokens),
                ]
                reply = await self._call(
                    operation,
                    lambda client: client.invoke_script(
                        self._scripts.take,
                        keys=[
                            keys.stream,
                            keys.keyset,
                            keys.cursors,
                            keys.watchers,
                            keys.tokens,
                        ],
                        args=args,  # noqa: B023  # awaited in this iteration
                    ),
                    run_id=run_id,
                    stream=stream,
                )
                if reply[0] == TAKEN:
                    _, start, stop, end, count, data, fresh = reply
                    session.acknowledge(keys.tokens, token)
                    if fresh:
                        await self._index(run_id)
                    if isinstance(data, list):  # a large batch, in a blob
                        data = await self._fetch(run_id, stream, data[0], operation)
                    return Share(Chunk(end - count, count, data), start, stop)
                if reply[0] == FOREIGN:
                    raise foreign_entry(reply[1], reply[2], run_id, stream)
                if reply[0] == LOST:
                    msg = (
                        f"values {reply[1]} to {reply[2] - 1} of stream {stream!r} "
                        f"of run {run_id} were handed to a member of group "
                        f"{group!r} whose answer was lost, and trimmed since"
                    )
                    raise StoreError(msg)
                cursor, length = int(reply[1]), int(reply[2])
                if reply[0] == ALL_TAKEN:
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
        found = await self._call(
            f"get the cursors of stream {stream!r} of run {run_id}",
            lambda client: client.hgetall(key),
            run_id=run_id,
            stream=stream,
        )
        try:
            return {name.decode(): int(value) for name, value in found.items()}
        except ValueError:
            msg = f"the cursors of stream {stream!r} of run {run_id} are not numbers"
            raise CorruptDataError(msg, run_id=run_id, stream=stream) from None

    async def trim(self, run_id: str, stream: str, before: int) -> None:
        """Drop the entries whose values all lie before ``before`` (XTRIM MINID).

        See ``Store.trim``. The end marker stays, and a stream trimmed empty still
        knows its length (Redis keeps the id of its last entry).
        """
        if before <= 0:
            return
        keys = self._keys_of(run_id, stream)
        session = await self._session()
        args = [str(before), *session.take_acks(keys.tokens)]
        operation = f"trim stream {stream!r} of run {run_id}"
        reply = await self._call(
            operation,
            lambda client: client.invoke_script(
                self._scripts.trim,
                keys=[keys.stream, keys.tokens, keys.blobs],
                args=args,
            ),
            run_id=run_id,
            stream=stream,
        )
        if blobs := list(reply[1:]):
            # Gone from the stream, so their keys go too (should this answer be
            # lost, they stay in the run's key set until it expires or is deleted).
            await self._call(operation, lambda client: client.delete(blobs))

    async def state(self, run_id: str, stream: str) -> StreamState:
        """Return the stream's length and end state; see ``Store.state``."""
        key = _keys.stream_key(self.prefix, run_id, stream)
        reply = await self._call(
            f"get the state of stream {stream!r} of run {run_id}",
            lambda client: client.invoke_script(self._scripts.state, keys=[key]),
            run_id=run_id,
            stream=stream,
        )
        error = reply[2] if len(reply) > 2 else None
        return StreamState(int(reply[0]), bool(reply[1]), error)

    # -- fields and claims -------------------------------------------------------
    async def set_fields(self, run_id: str, fields: Mapping[str, bytes]) -> None:
        """Set metadata fields of a run (HSET); see ``Store.set_fields``."""
        if not fields:
            return
        args: list[str | bytes] = [self._ttl_ms]
        for name, value in fields.items():
            args += (name, value)
        keys = [
            _keys.meta_key(self.prefix, run_id),
            _keys.keys_key(self.prefix, run_id),
        ]
        fresh = await self._call(
            f"set fields of run {run_id}",
            lambda client: client.invoke_script(
                self._scripts.set_fields, keys=keys, args=args
            ),
            run_id=run_id,
            size=sum(len(value) for value in fields.values()),
        )
        if fresh:
            await self._index(run_id)

    async def get_fields(
        self, run_id: str, names: Sequence[str] | None = None
    ) -> dict[str, bytes]:
        """Return metadata fields of a run; see ``Store.get_fields``."""
        key = _keys.meta_key(self.prefix, run_id)
        operation = f"get fields of run {run_id}"
        if names is None:
            found = await self._call(
                operation, lambda client: client.hgetall(key), run_id=run_id
            )
            return {name.decode(): value for name, value in found.items()}
        if not names:
            return {}
        wanted = list(names)
        values = await self._call(
            operation, lambda client: client.hmget(key, wanted), run_id=run_id
        )
        return {n: v for n, v in zip(wanted, values, strict=True) if v is not None}

    async def delete_fields(self, run_id: str, names: Sequence[str]) -> None:
        """Remove metadata fields of a run (HDEL); see ``Store.delete_fields``."""
        if not names:
            return
        key, wanted = _keys.meta_key(self.prefix, run_id), list(names)
        await self._call(
            f"delete fields of run {run_id}",
            lambda client: client.hdel(key, wanted),
            run_id=run_id,
        )

    async def claim(self, run_id: str, name: str) -> bool:
        """Claim ``name`` within a run (HSETNX); see ``Store.claim``.

        The claim records the winner's token, so a winner whose answer was lost
        still wins when its call is retried.
        """
        keys = [
            _keys.claims_key(self.prefix, run_id),
            _keys.keys_key(self.prefix, run_id),
        ]
        args = [self._ttl_ms, name, uuid.uuid4().hex]
        won, fresh = await self._call(
            f"claim {name!r} in run {run_id}",
            lambda client: client.invoke_script(
                self._scripts.claim, keys=keys, args=args
            ),
            run_id=run_id,
        )
        if fresh:
            await self._index(run_id)
        return bool(won)

    # -- runs --------------------------------------------------------------------
    async def list_runs(self) -> list[str]:
        """Return the ids of the runs in the store, oldest first.

        Runs whose data has expired are dropped from the index on the way.
        """
        runs_key = _keys.runs_key(self.prefix)
        found = await self._call(
            "list runs",
            lambda client: client.custom_command(["ZRANGE", runs_key, "0", "-1"]),
        )
        run_ids = [run_id.decode() for run_id in found or ()]
        if not run_ids:
            return []
        # Not atomic: on a cluster, glide sends each node the keys it holds.
        check = (ClusterBatch if self.address.cluster else GlideBatch)(is_atomic=False)
        for run_id in run_ids:
            check.exists([_keys.keys_key(self.prefix, run_id)])
        alive = await self._call(
            "list runs", lambda client: client.exec(check, raise_on_error=True)
        )
        expired = [r for r, n in zip(run_ids, alive, strict=True) if not n]
        if expired:
            await self._call("list runs", lambda client: client.zrem(runs_key, expired))
        return [r for r, n in zip(run_ids, alive, strict=True) if n]

    async def delete_run(self, run_id: str) -> None:
        """Delete every stream, field and claim of a run; see ``Store.delete_run``."""
        keys_key = _keys.keys_key(self.prefix, run_id)
        operation = f"delete run {run_id}"
        session = await self._session()
        # What this loop knows of the run's streams (lengths, cursors) goes too:
        # a run started afresh under the same id begins at position 0 again.
        session.forget(_keys.run_tag(self.prefix, run_id).encode() + b":")
        members = await self._call(
            operation, lambda client: client.smembers(keys_key), run_id=run_id
        )
        doomed = [
            *members,
            keys_key,
            _keys.meta_key(self.prefix, run_id),
            _keys.claims_key(self.prefix, run_id),
        ]
        await self._call(operation, lambda client: client.delete(doomed))
        await self._call(
            operation,
            lambda client: client.zrem(_keys.runs_key(self.prefix), [run_id]),
        )

    async def aclose(self) -> None:
        """Close the connections; the store may not be used afterwards.

        A later call raises ``StoreConnectionError`` rather than connecting
        again: a connection opened behind the owner's back would never be closed.
        """
        with self._sessions_lock:
            self._closed = True
            sessions, self._sessions = list(self._sessions.values()), {}
        for session in sessions:
            await session.close()


async def _same(client: Any) -> Any:
    return client


def _quiet_client_log(level: str) -> None:
    """Set glide's log level, unless glide's ``Logger`` is already set up."""
    if level not in _LOG_LEVELS:
        msg = f"client_log_level must be one of {', '.join(_LOG_LEVELS)}, got {level!r}"
        raise ValueError(msg)
    if GlideLogger._instance is None:  # glide has no public check
        GlideLogger.init(_LOG_LEVELS[level])
