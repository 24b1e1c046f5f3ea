"""Reading the Redis store's value streams: read, take, cursors and state.

Readers' cursors and groups' cursors share one hash per stream (reader or group name
-> position). The read script records a reader's cursor in the same call, and the
take script moves a group's cursor past the values it hands out, so both stay one
round trip. A read that finds nothing new waits for a change of the stream, which
its event loop's session hears of (``_redis_sessions``).
"""

from __future__ import annotations

import uuid
from typing import Any

from .. import _keys
from .._wakeups import clock
from ..exceptions import CorruptDataError, StoreError
from ._base import Batch, Chunk, Share, StreamState
from ._redis_blobs import RedisBlobs
from ._redis_entries import foreign_entry, parse_entries
from ._redis_scripts import ReadStatus, TakeStatus, unexpected_reply
from ._redis_sessions import RENEW_S, WATCHED_S

__all__ = ("RedisStreamReads",)


class RedisStreamReads(RedisBlobs):
    """The part of ``RedisStore`` that reads streams."""

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
        once they hold 8 MiB; read again from the ``stop`` of the last one for more.
        An entry over 1 MiB ends the batch and is fetched on a connection of its
        own. The script that reads also records ``reader``'s cursor. A read where
        a batch appended through this store object ended, with nothing changed
        since, skips it: that append recorded the cursor here (see
        ``_redis_sessions``).

        Raises:
            CorruptDataError: the entry at ``position`` is not one Datagraph
                wrote (entries before it are returned first).
        """
        keys = self._keys_of(run_id, stream)
        operation = f"read stream {stream!r} of run {run_id}"
        session = await self._session()
        wait = timeout > 0
        deadline = clock() + timeout if wait else 0.0
        args = [str(position), self._ttl_ms, session.wake_key if wait else b""]
        if reader is not None:
            args.append(reader)
        if wait and self.address.cluster:
            await self._call(operation, lambda _: session.listen())
        tracked = session.track(keys.tracked)
        try:
            now = clock() if wait else 0.0
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
                    status, fresh = reply[0], reply[1]
                    if fresh:  # the cursor was the run's first key
                        await self._index(run_id)
                    if status == ReadStatus.ENTRIES:
                        return await self._entries(reply, run_id, stream, operation)
                    if status != ReadStatus.WAITING:
                        raise unexpected_reply(reply, script="read")
                    now = clock() if wait else 0.0
                    if now >= deadline:
                        return Batch(())
                    # The script registered this loop's wake stream (it ran
                    # after ``sent``; the server's clock then counts the TTL).
                    tracked.watched_until = sent + WATCHED_S
                ask = True
                # Any change of the stream wakes this wait, also an end that a
                # reader asking beyond the last value must hear of.
                until = min(deadline, now + RENEW_S)
                await session.wait(tracked, seen, until, position, reader)
                # The cursor is at this position on the server already, so what
                # this loop appended right there needs no second round trip.
                if handed := tracked.handed(position):
                    return Batch(handed)
                now = clock()
        finally:
            session.untrack(keys.tracked, tracked)

    async def _entries(
        self, reply: list[Any], run_id: str, stream: str, operation: str
    ) -> Batch:
        """Turn a read script's reply into a batch, fetching a large last entry."""
        parsed = parse_entries(reply, 2, run_id, stream)
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
        deadline = clock() + timeout if wait else 0.0
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
                status = reply[0]
                if status == TakeStatus.TAKEN:
                    _, start, stop, batch_stop, count, data, fresh = reply
                    session.acknowledge(keys.tokens, token)
                    if fresh:
                        await self._index(run_id)
                    if isinstance(data, list):  # a large batch, in a blob
                        data = await self._fetch(run_id, stream, data[0], operation)
                    chunk = Chunk(batch_stop - count, count, data)
                    return Share(chunk, start, stop)
                if status == TakeStatus.FOREIGN:
                    raise foreign_entry(reply[1], reply[2], run_id, stream)
                if status == TakeStatus.LOST:
                    msg = (
                        f"values {reply[1]} to {reply[2] - 1} of stream {stream!r} "
                        f"of run {run_id} were handed to a member of group "
                        f"{group!r} whose answer was lost, and trimmed since"
                    )
                    raise StoreError(msg)
                if status == TakeStatus.ALL_TAKEN:
                    cursor, length, has_error, error = reply[1:]
                    final = StreamState(length, True, error if has_error else None)
                    return Share(None, cursor, cursor, final)
                if status != TakeStatus.NOTHING:
                    raise unexpected_reply(reply, script="take")
                cursor = int(reply[1])
                now = clock() if wait else 0.0
                if now >= deadline:
                    return Share(None, cursor, cursor)
                until = min(deadline, now + RENEW_S)
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

    async def state(self, run_id: str, stream: str) -> StreamState:
        """Return the stream's length and end state; see ``Store.state``."""
        key = _keys.stream_key(self.prefix, run_id, stream)
        reply = await self._call(
            f"get the state of stream {stream!r} of run {run_id}",
            lambda client: client.invoke_script(self._scripts.state, keys=[key]),
            run_id=run_id,
            stream=stream,
        )
        length, ended, has_error, error = reply
        return StreamState(int(length), bool(ended), error if has_error else None)
