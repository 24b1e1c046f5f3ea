"""The Redis store's wake sessions: how a blocked read learns that its stream changed.

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
registration (``RENEW_S``) at the latest.

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
import functools
import math
import uuid
from typing import TYPE_CHECKING, Any

import anyio

from .. import _background, _keys
from .._wakeups import clock, wakeup
from ..exceptions import StoreConnectionError
from ._glide import ClosingError, GlideClient, GlideClusterClient, StreamReadOptions
from ._redis_scripts import WAKE_COUNT, WATCH_TTL_MS

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Mapping, Sequence

    from glide import PubSubMsg

    from ._base import Chunk
    from ._redis_connection import RedisConnection

__all__ = (
    "RENEW_S",
    "RETRY_FIRST_S",
    "RETRY_MAX_S",
    "WATCHED_S",
    "Session",
    "Tracked",
    "loop_finished",
)

#: Longest single XREAD BLOCK; a longer wait simply issues another one.
_MAX_BLOCK_MS = 10_000
#: How often a reader still waiting renews its registration (by reading again).
RENEW_S = 10.0
#: How long after a registration this process still counts on it (a safe margin
#: below ``WATCH_TTL_MS``, which runs on the server's clock).
WATCHED_S = WATCH_TTL_MS / 1000 - RENEW_S
#: Most batches appended here that a blocked reader of this loop may take directly.
_HANDED_CHUNKS = 4
#: Stream keys a session follows between reads before it forgets idle ones.
_TRACKED_KEYS = 1024
#: Pauses after a failed command (and of the wake watcher after a failed XREAD),
#: doubling up to the second.
RETRY_FIRST_S = 0.05
RETRY_MAX_S = 1.0
#: Idle large-command connections a session keeps for the next ones.
_BULK_IDLE = 2


class _Waiter:
    """A read blocked on a stream key of this loop: at which position, for whom."""

    __slots__ = ("position", "reader", "wakeup")

    def __init__(self, position: int, reader: str | None) -> None:
        self.wakeup = wakeup()
        self.position = position
        self.reader = reader


class Tracked:
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


def loop_finished(loop: object) -> bool:
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


async def _close_quietly(client: Any) -> None:
    """Close a client whose state is unknown; a failure to close changes nothing."""
    with contextlib.suppress(Exception):
        await client.close()


class Session:
    """One event loop's connections to the server and its blocked readers.

    glide clients and anyio events belong to the event loop that made them, so a
    store used from a second ``anyio.run()`` (or from asyncio, then trio) opens a
    new session there.
    """

    def __init__(self, store: RedisConnection, loop: object) -> None:
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
        self.tracked: dict[bytes, Tracked] = {}
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
                    _background.spawn(functools.partial(_close_quietly, client))
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
        _background.spawn(functools.partial(_close_quietly, client))

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
            _background.spawn(functools.partial(_close_quietly, client))
            raise
        if len(self.bulk) < _BULK_IDLE and not self.closed:
            self.bulk.append(client)
        else:
            _background.spawn(functools.partial(_close_quietly, client))

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
    def track(self, key: bytes) -> Tracked:
        """Follow the changes of ``key`` until the matching ``untrack``."""
        tracked = self.tracked.get(key)
        if tracked is None:
            if len(self.tracked) >= _TRACKED_KEYS:
                self._prune(clock())
            tracked = self.tracked[key] = Tracked()
        tracked.users += 1
        return tracked

    def untrack(self, key: bytes, tracked: Tracked) -> None:
        tracked.users -= 1
        if not tracked.blocked:
            tracked.chunks = []  # no reader left to hand them to
        # Between reads, a key stays known while its registration holds: the next
        # read may then wait without a round trip (see ``Tracked.settled``).
        if not tracked.users and tracked.watched_until <= clock():
            self._drop(key, tracked)

    def _drop(self, key: bytes, tracked: Tracked) -> None:
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
        wakes may take it from here (see ``RedisStreamReads.read``).
        """
        tracked = self.tracked.get(key)
        if tracked is not None:
            tracked.version += 1
            if chunk is not None:
                tracked.appended(chunk, moved)
            waiters, tracked.waiters = tracked.waiters, []
            for waiter in waiters:
                waiter.wakeup.set()

    def wake_all(self) -> None:
        """Wake every blocked reader (they read again and wait again if need be)."""
        for key in list(self.tracked):
            self.wake(key)

    async def wait(
        self,
        tracked: Tracked,
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
            await waiter.wakeup.wait(until)
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
        delay = RETRY_FIRST_S
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
                    delay = min(delay * 2, RETRY_MAX_S)
                    continue
                delay = RETRY_FIRST_S
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
