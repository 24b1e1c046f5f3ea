"""Writing the Redis store's value streams: append, end, reopen and trim.

Streams are Redis Streams holding one entry per appended batch. An entry's id encodes
the position just past its batch (``<stop>-0``), so ids grow with positions, the
server itself rejects out-of-order ids, and a reader at position ``p`` asks for the
entries after ``<p>-0``. The end of a stream is the entry ``<length>-1``, right
after its last batch (``<length>-2`` and so on once a resumed run reopened and ended
it again). Appends and ends are Lua scripts (``lua/append.lua``, ...), so checking a
stream's length and writing it is one atomic step however many producers race.

Trimming (XTRIM MINID) never drops the end marker, and a stream trimmed empty still
knows its length: Redis keeps the id of its last entry (XINFO STREAM
``last-generated-id``), which is also why new appends still need higher ids.
"""

from __future__ import annotations

import uuid

from ..exceptions import StoreError, StreamClosedError
from ._base import Chunk
from ._redis_blobs import RedisBlobs
from ._redis_scripts import AppendStatus, unexpected_reply

__all__ = ("RedisStreamWrites",)


class RedisStreamWrites(RedisBlobs):
    """The part of ``RedisStore`` that writes streams."""

    async def append(
        self, run_id: str, stream: str, start: int, count: int, data: bytes
    ) -> int:
        """Append a batch at ``start``; see ``Store.append``.

        Raises:
            ValueTooLargeError: ``data`` is over ``max_value_size``.
        """
        if start < 0 or count < 0:
            msg = f"start and count must not be negative, got {start} and {count}"
            raise StoreError(msg)
        self._check_size(run_id, stream, count, data)
        keys = self._keys_of(run_id, stream)
        session = await self._session()
        operation = f"append to stream {stream!r} of run {run_id}"
        payload, blob = await self._payload(keys, data, run_id, stream)
        script_keys = [
            keys.stream,
            keys.keyset,
            keys.watchers,
            keys.cursors,
            keys.blobs,
            *blob,
        ]
        moved = session.readers_at(keys.tracked, start) if count else []
        args: list[str | bytes] = [
            str(start),
            str(start + count),
            str(count),
            payload,
            self._ttl_ms,
            session.wake_key,
            *moved,
        ]
        status, length, _ = await self._write(
            operation,
            self._scripts.append,
            script_keys,
            args,
            run_id=run_id,
            stream=stream,
        )
        if status == AppendStatus.WRITTEN:
            session.wake(keys.tracked, Chunk(start, count, data), moved)
        elif status == AppendStatus.HELD:
            # A retried attempt may have written it (and moved the cursors of the
            # readers blocked here): they read it back.
            session.wake(keys.tracked)
        elif status == AppendStatus.ENDED:
            msg = (
                f"stream {stream!r} of run {run_id} has ended after {length} values; "
                f"cannot append values {start} to {start + count - 1}"
            )
            raise StreamClosedError(msg)
        elif status == AppendStatus.GAP:
            msg = (
                f"cannot append at position {start} to stream {stream!r} of run "
                f"{run_id}: it holds {length} values, so values {length} to "
                f"{start - 1} would be missing"
            )
            raise StoreError(msg)
        else:
            raise unexpected_reply(status, script="append")
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
        ended, _, _ = await self._write(
            f"end stream {stream!r} of run {run_id}",
            self._scripts.end_stream,
            [keys.stream, keys.keyset, keys.watchers],
            args,
            run_id=run_id,
            stream=stream,
            size=len(error or b""),
        )
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
            raise StoreError(msg)
        self._check_size(run_id, stream, count, data)
        keys = self._keys_of(run_id, stream)
        session = await self._session()
        operation = f"append to stream {stream!r} of run {run_id}"
        payload, blob = await self._payload(keys, data, run_id, stream)
        script_keys = [keys.stream, keys.keyset, keys.watchers, keys.tokens, keys.blobs]
        script_keys += blob
        token = uuid.uuid4().hex
        args: list[str | bytes] = [
            str(count),
            payload,
            self._ttl_ms,
            session.wake_key,
            token,
        ]
        args += session.take_acks(keys.tokens)
        status, start, _ = await self._write(
            operation,
            self._scripts.append_at_end,
            script_keys,
            args,
            run_id=run_id,
            stream=stream,
        )
        if status == AppendStatus.ENDED:
            msg = (
                f"stream {stream!r} of run {run_id} has ended after {start} values; "
                f"cannot append {count} more"
            )
            raise StreamClosedError(msg)
        if count:
            session.acknowledge(keys.tokens, token)
            session.wake(keys.tracked, Chunk(int(start), count, data))
        return int(start)

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
