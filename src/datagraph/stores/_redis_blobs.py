"""Large batches in the Redis store: blobs, each on a connection of its own.

An entry with more than ``BULK_BYTES`` of data is not passed to the append
script: it is SET first in a key of its own (a *blob*), and the stream's entry
names that key (``n <count> b <key>``) instead of holding the data. The stream's
blobs sorted set finds a blob again by the position its batch ends at, so trim
forgets the blobs of the entries it drops. A reader is handed the blob's key and
fetches its data with GET. Both the SET and the GET run on connections of their
own, each allowed time in proportion to ``max_value_size``, so a large command
neither waits behind nor delays the small ones of other runs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..exceptions import StoreError
from ._limits import value_too_large
from ._redis_connection import BULK_BYTES, RedisConnection

if TYPE_CHECKING:
    from .._keys import StreamKeys

__all__ = ("RedisBlobs",)


class RedisBlobs(RedisConnection):
    """The part of ``RedisStore`` that keeps large batches in blobs."""

    def _check_size(self, run_id: str, stream: str, count: int, data: bytes) -> None:
        """Refuse an entry over ``max_value_size`` before anything is sent."""
        if len(data) > self.max_value_size:
            raise value_too_large(run_id, stream, count, len(data), self.max_value_size)

    async def _put_blob(
        self, keys: StreamKeys, data: bytes, run_id: str, stream: str, operation: str
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

    async def _payload(
        self, keys: StreamKeys, data: bytes, run_id: str, stream: str
    ) -> tuple[bytes, list[str]]:
        """Return what an append script takes as the batch's data, and its keys.

        A small batch travels in the script's call itself: ``(data, [])``. A large
        one is SET in a blob first: ``(b"", [blob key])``, the key the script
        declares last (it records the blob with the batch, or deletes it when the
        batch is not appended).
        """
        if len(data) <= BULK_BYTES:
            return data, []
        operation = f"append to stream {stream!r} of run {run_id}"
        return b"", [await self._put_blob(keys, data, run_id, stream, operation)]
