"""What the contract's tests share: one-byte values, other store objects, wake-ups.

Most tests write each value's own position as its byte, so an assertion on the bytes
read shows which values came back, and in what order. Store objects of other
processes are opened and closed by ``other_store(s)``; ``woken`` runs a read or take
that blocks until another call wakes it.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, TypeVar

import anyio
from anyio import wait_all_tasks_blocked

from datagraph.stores import Batch, Chunk

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable, Sequence

    from datagraph.stores import Store

T = TypeVar("T")


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


@contextlib.asynccontextmanager
async def other_stores(
    store_factory: Callable[[], Store], store: Store, count: int
) -> AsyncIterator[list[Store]]:
    """Open ``count`` more store objects, as other processes would, and close them.

    A factory may hand out ``store`` itself (a store keeping its data in the
    object): that one is left open, for the ``store`` fixture to close.
    """
    others = [store_factory() for _ in range(count)]
    try:
        yield others
    finally:
        for other in others:
            if other is not store:
                await other.aclose()


@contextlib.asynccontextmanager
async def other_store(
    store_factory: Callable[[], Store], store: Store
) -> AsyncIterator[Store]:
    """Open one more store object, as another process would, and close it."""
    async with other_stores(store_factory, store, 1) as (other,):
        yield other


async def woken(
    wait: Callable[[], Awaitable[T]], wake: Callable[[], Awaitable[object]]
) -> T:
    """Start ``wait`` (a read or take), ``wake`` it once it blocks; return its result.

    Fails if ``wait`` returns before ``wake`` runs, or both take over 10 seconds.
    """
    results: list[T] = []

    async def waiter() -> None:
        results.append(await wait())

    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            tg.start_soon(waiter)
            await wait_all_tasks_blocked()
            assert results == [], "it returned before it was woken"
            await wake()
    return results[0]
