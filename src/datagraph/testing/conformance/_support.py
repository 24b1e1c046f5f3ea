"""What the contract's tests share: values of one byte each, and reading them back.

Most tests write each value's own position as its byte, so an assertion on the bytes
read shows which values came back, and in what order.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from datagraph.stores import Batch, Chunk

if TYPE_CHECKING:
    from collections.abc import Sequence

    from datagraph.stores import Store


def values(*items: int) -> bytes:
    """Encode positions as the data of a batch, one byte each (enough for tests)."""
    return bytes(items)


def joined(chunks: Sequence[Chunk], position: int = 0) -> bytes:
    """The values that chunks hold from ``position`` on (one byte per value)."""
    out = b""
    expected = None
    for chunk in chunks:
        assert len(chunk.data) == chunk.count
        if expected is not None:
            assert chunk.start == expected, "chunks must be contiguous and in order"
        expected = chunk.stop
        out += chunk.data[max(position - chunk.start, 0) :]
    return out


async def read_all(store: Store, run_id: str, stream: str, timeout: float = 5) -> Batch:
    """Read a stream from 0 until its end, joining the batches into one."""
    chunks: list[Chunk] = []
    position = 0
    while True:
        batch = await store.read(run_id, stream, position, timeout=timeout)
        assert batch.chunks or batch.final, "read timed out before the stream ended"
        chunks += batch.chunks
        if batch.chunks:
            position = batch.chunks[-1].stop
        if batch.final is not None:
            return Batch(chunks, batch.final)
