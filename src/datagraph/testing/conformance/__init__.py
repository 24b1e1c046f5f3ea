"""The ``Store`` contract: every promise of ``datagraph.stores.Store``, as pytest tests.

A store author runs them on their store by subclassing ``StoreContract`` in a test
module and giving it a ``store_factory`` fixture::

    import pytest
    from datagraph.testing.conformance import StoreContract

    class TestMyStore(StoreContract):
        @pytest.fixture
        def store_factory(self):
            shared = MyServer()  # each store object reaches the same data
            return lambda: MyStore(shared)

pytest then collects every contract test for that store, on asyncio and on trio.
``store_factory`` makes store objects that share their data, as the stores of
other processes would; for a store that keeps its data in the object, it hands out
that one object. Each test opens a store with ``async with store_factory()``;
override the ``store`` fixture to clean up after it (e.g. delete the test's keys).

Needs pytest and trio: ``pip install datagraph[testing]``.
"""

from __future__ import annotations

import os
import uuid
from typing import TYPE_CHECKING, Any, ClassVar

import anyio
import pytest
from anyio import wait_all_tasks_blocked
from anyio.lowlevel import checkpoint

from datagraph.exceptions import StoreError, StreamClosedError
from datagraph.stores import Batch, Chunk, Store, StreamState
from datagraph.stores._base import Share

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable, Sequence

__all__ = ["StoreContract"]


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


# -------------------------------------------------------------------- appending
async def test_append_then_read_in_order(store: Store, run_id: str) -> None:
    assert await store.append(run_id, "s", 0, 2, values(0, 1)) == 2
    assert await store.append(run_id, "s", 2, 1, values(2)) == 3
    assert await store.append(run_id, "s", 3, 3, values(3, 4, 5)) == 6

    batch = await store.read(run_id, "s", 0, timeout=1)
    assert [(c.start, c.count) for c in batch.chunks] == [(0, 2), (2, 1), (3, 3)]
    assert joined(batch.chunks) == values(0, 1, 2, 3, 4, 5)
    assert batch.final is None
    assert await store.state(run_id, "s") == StreamState(6, ended=False, error=None)


async def test_read_from_a_position_inside_a_chunk(store: Store, run_id: str) -> None:
    await store.append(run_id, "s", 0, 3, values(0, 1, 2))
    await store.append(run_id, "s", 3, 3, values(3, 4, 5))

    batch = await store.read(run_id, "s", 4, timeout=1)
    # The first chunk may start before the position; the reader skips the rest.
    assert batch.chunks[0].start <= 4 < batch.chunks[0].stop
    assert joined(batch.chunks, 4) == values(4, 5)
    batch = await store.read(run_id, "s", 3, timeout=1)
    assert joined(batch.chunks, 3) == values(3, 4, 5)


async def test_re_append_of_held_values_is_a_no_op(store: Store, run_id: str) -> None:
    await store.append(run_id, "s", 0, 2, values(0, 1))
    await store.append(run_id, "s", 2, 2, values(2, 3))

    # A re-run writes the same positions again (even different bytes): ignored.
    assert await store.append(run_id, "s", 0, 2, b"XX") == 4
    assert await store.append(run_id, "s", 2, 2, b"YY") == 4
    assert await store.append(run_id, "s", 1, 3, b"ZZZ") == 4
    batch = await store.read(run_id, "s", 0, timeout=1)
    assert joined(batch.chunks) == values(0, 1, 2, 3)


async def test_partial_overlap_writes_nothing_and_returns_length(
    store: Store, run_id: str
) -> None:
    await store.append(run_id, "s", 0, 3, values(0, 1, 2))

    assert await store.append(run_id, "s", 2, 3, values(2, 3, 4)) == 3
    assert await store.state(run_id, "s") == StreamState(3)
    # The caller then appends the part past the returned length.
    assert await store.append(run_id, "s", 3, 2, values(3, 4)) == 5
    batch = await store.read(run_id, "s", 0, timeout=1)
    assert joined(batch.chunks) == values(0, 1, 2, 3, 4)


async def test_append_past_the_end_raises(store: Store, run_id: str) -> None:
    await store.append(run_id, "stream-x", 0, 2, values(0, 1))

    with pytest.raises(StoreError) as info:
        await store.append(run_id, "stream-x", 5, 1, values(5))
    message = str(info.value)
    assert run_id in message
    assert "stream-x" in message
    assert "5" in message
    assert not isinstance(info.value, StreamClosedError)
    assert await store.state(run_id, "stream-x") == StreamState(2)

    with pytest.raises(StoreError):  # also on a stream that holds nothing yet
        await store.append(run_id, "empty", 1, 1, values(1))


async def test_concurrent_producers_write_each_value_once(
    store_factory: Callable[[], Store], store: Store, run_id: str
) -> None:
    # Ten re-runs of one producer race; the stream still holds every value once.
    async def produce(producer: Store) -> None:
        position = 0
        for size in (3, 1, 4, 1, 5):
            data = bytes(range(position, position + size))
            length = await producer.append(run_id, "s", position, size, data)
            assert length >= position + size
            position += size

    producers = [store_factory() for _ in range(10)]
    async with anyio.create_task_group() as tg:
        for producer in producers:
            tg.start_soon(produce, producer)
    for producer in producers:
        if producer is not store:
            await producer.aclose()

    batch = await store.read(run_id, "s", 0, timeout=1)
    assert joined(batch.chunks) == bytes(range(14))


async def test_empty_append_at_the_length_is_a_no_op(store: Store, run_id: str) -> None:
    await store.append(run_id, "s", 0, 1, values(0))
    assert await store.append(run_id, "s", 1, 0, b"") == 1
    assert await store.state(run_id, "s") == StreamState(1)


# ----------------------------------------------------------------------- ending
async def test_end_is_idempotent_and_the_first_call_wins(
    store: Store, run_id: str
) -> None:
    await store.append(run_id, "s", 0, 1, values(0))

    assert await store.end_stream(run_id, "s", b"first failure") is True
    assert await store.end_stream(run_id, "s", b"second failure") is False
    assert await store.end_stream(run_id, "s") is False
    assert await store.state(run_id, "s") == StreamState(1, True, b"first failure")
    batch = await store.read(run_id, "s", 0, timeout=1)
    assert batch.final == StreamState(1, True, b"first failure")


async def test_end_without_error(store: Store, run_id: str) -> None:
    assert await store.end_stream(run_id, "s") is True
    assert await store.end_stream(run_id, "s", b"too late") is False
    assert await store.state(run_id, "s") == StreamState(0, True, None)


@pytest.mark.parametrize(
    "error", [b"boom", b"\x00\xff\xfe binary \r\n", bytes(range(256)) * 40, b""]
)
async def test_error_bytes_are_preserved(
    store: Store, run_id: str, error: bytes
) -> None:
    await store.append(run_id, "s", 0, 2, values(0, 1))
    await store.end_stream(run_id, "s", error)

    state = await store.state(run_id, "s")
    assert state == StreamState(2, True, error)
    assert state.error is not None
    batch = await store.read(run_id, "s", 2, timeout=1)
    assert batch.final == StreamState(2, True, error)


async def test_append_after_end_raises_stream_closed(store: Store, run_id: str) -> None:
    await store.append(run_id, "s", 0, 2, values(0, 1))
    await store.end_stream(run_id, "s")

    with pytest.raises(StreamClosedError) as info:
        await store.append(run_id, "s", 2, 1, values(2))
    assert run_id in str(info.value)
    assert await store.state(run_id, "s") == StreamState(2, True)


async def test_re_append_of_held_values_after_end_is_a_no_op(
    store: Store, run_id: str
) -> None:
    await store.append(run_id, "s", 0, 2, values(0, 1))
    await store.append(run_id, "s", 2, 1, values(2))
    await store.end_stream(run_id, "s")

    # A re-run of the producer writes its values again: nothing new, no error.
    assert await store.append(run_id, "s", 0, 2, values(0, 1)) == 3
    assert await store.append(run_id, "s", 1, 2, values(1, 2)) == 3


async def test_partial_overlap_after_end_raises_stream_closed(
    store: Store, run_id: str
) -> None:
    # "the stream has ended and the batch holds new values": value 3 is new.
    await store.append(run_id, "s", 0, 3, values(0, 1, 2))
    await store.end_stream(run_id, "s")

    with pytest.raises(StreamClosedError):
        await store.append(run_id, "s", 2, 2, values(2, 3))


# ---------------------------------------------------------------------- reading
async def test_read_of_an_unknown_stream_times_out_empty(
    store: Store, run_id: str
) -> None:
    started = anyio.current_time()
    batch = await store.read(run_id, "nothing", 0, timeout=0.2)
    elapsed = anyio.current_time() - started
    assert list(batch.chunks) == []
    assert batch.final is None
    assert 0.15 <= elapsed < 5


async def test_read_past_the_values_times_out_empty(store: Store, run_id: str) -> None:
    await store.append(run_id, "s", 0, 2, values(0, 1))
    started = anyio.current_time()
    batch = await store.read(run_id, "s", 2, timeout=0.2)
    assert list(batch.chunks) == []
    assert batch.final is None
    assert anyio.current_time() - started >= 0.15


async def test_read_with_zero_timeout_returns_at_once(
    store: Store, run_id: str
) -> None:
    with anyio.fail_after(2):
        batch = await store.read(run_id, "s", 0, timeout=0)
    assert list(batch.chunks) == []
    await store.append(run_id, "s", 0, 1, values(0))
    batch = await store.read(run_id, "s", 0, timeout=0)
    assert joined(batch.chunks) == values(0)


async def test_available_values_are_returned_without_waiting(
    store: Store, run_id: str
) -> None:
    await store.append(run_id, "s", 0, 1, values(0))
    with anyio.fail_after(2):  # a long timeout must not delay a ready answer
        batch = await store.read(run_id, "s", 0, timeout=30)
    assert joined(batch.chunks) == values(0)


async def test_blocked_read_is_woken_by_an_append(store: Store, run_id: str) -> None:
    await store.append(run_id, "s", 0, 1, values(0))
    results: list[Batch] = []

    async def reader() -> None:
        results.append(await store.read(run_id, "s", 1, timeout=30))

    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            tg.start_soon(reader)
            await wait_all_tasks_blocked()
            assert results == []
            await store.append(run_id, "s", 1, 2, values(1, 2))
    assert joined(results[0].chunks, 1) == values(1, 2)


async def test_blocked_read_is_woken_by_another_store_object(
    store_factory: Callable[[], Store], store: Store, run_id: str
) -> None:
    writer = store_factory()  # as if in another process
    results: list[Batch] = []

    async def reader() -> None:
        results.append(await store.read(run_id, "s", 0, timeout=30))

    try:
        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg:
                tg.start_soon(reader)
                await wait_all_tasks_blocked()
                await writer.append(run_id, "s", 0, 1, values(7))
    finally:
        if writer is not store:
            await writer.aclose()
    assert joined(results[0].chunks) == values(7)


async def test_end_wakes_a_blocked_reader(store: Store, run_id: str) -> None:
    await store.append(run_id, "s", 0, 2, values(0, 1))
    results: list[Batch] = []

    async def reader() -> None:
        results.append(await store.read(run_id, "s", 2, timeout=30))

    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            tg.start_soon(reader)
            await wait_all_tasks_blocked()
            await store.end_stream(run_id, "s", b"it failed")
    assert list(results[0].chunks) == []
    assert results[0].final == StreamState(2, True, b"it failed")


async def test_end_is_visible_to_readers(store: Store, run_id: str) -> None:
    await store.append(run_id, "s", 0, 2, values(0, 1))
    await store.append(run_id, "s", 2, 1, values(2))
    await store.end_stream(run_id, "s")

    batch = await store.read(run_id, "s", 0, timeout=1)
    assert joined(batch.chunks) == values(0, 1, 2)
    assert batch.final == StreamState(3, True, None)
    # A reader that has seen every value hears of the end at once.
    with anyio.fail_after(2):
        batch = await store.read(run_id, "s", 3, timeout=30)
    assert list(batch.chunks) == []
    assert batch.final == StreamState(3, True, None)


async def test_end_of_an_empty_stream(store: Store, run_id: str) -> None:
    await store.end_stream(run_id, "s")
    with anyio.fail_after(2):
        batch = await store.read(run_id, "s", 0, timeout=30)
    assert list(batch.chunks) == []
    assert batch.final == StreamState(0, True, None)


async def test_many_concurrent_readers_all_see_everything(
    store: Store, run_id: str
) -> None:
    n_readers, n_batches = 50, 60
    seen: list[bytes] = []
    ready = anyio.Event()

    async def reader() -> None:
        await ready.wait()
        batch = await read_all(store, run_id, "s", timeout=30)
        assert batch.final == StreamState(n_batches * 2, True, None)
        seen.append(joined(batch.chunks))

    async def producer() -> None:
        ready.set()
        for i in range(n_batches):
            await store.append(run_id, "s", 2 * i, 2, bytes([i, i]))
            await checkpoint()  # let readers catch up and block again
        await store.end_stream(run_id, "s")

    with anyio.fail_after(30):
        async with anyio.create_task_group() as tg:
            for _ in range(n_readers):
                tg.start_soon(reader)
            tg.start_soon(producer)
    expected = b"".join(bytes([i, i]) for i in range(n_batches))
    assert seen == [expected] * n_readers


async def test_readers_of_many_streams_each_get_their_own(
    store: Store, run_id: str
) -> None:
    n_streams = 40
    got: dict[str, bytes] = {}

    async def reader(stream: str) -> None:
        batch = await read_all(store, run_id, stream, timeout=30)
        got[stream] = joined(batch.chunks)

    with anyio.fail_after(30):
        async with anyio.create_task_group() as tg:
            for i in range(n_streams):
                tg.start_soon(reader, f"s{i}")
            await wait_all_tasks_blocked()
            for i in reversed(range(n_streams)):
                await store.append(run_id, f"s{i}", 0, 1, values(i))
                await store.end_stream(run_id, f"s{i}")
    assert got == {f"s{i}": values(i) for i in range(n_streams)}


async def test_read_returns_many_chunks_per_call(store: Store, run_id: str) -> None:
    for i in range(300):
        await store.append(run_id, "s", i, 1, values(i % 256))
    batch = await store.read(run_id, "s", 0, timeout=1)
    assert len(batch.chunks) > 100  # batched: far fewer calls than values
    position, data = 0, b""
    while position < 300:
        batch = await store.read(run_id, "s", position, timeout=1)
        data += joined(batch.chunks, position)
        position = batch.chunks[-1].stop
    assert data == bytes(i % 256 for i in range(300))


async def test_large_batch(store: Store, run_id: str) -> None:
    data = os.urandom(1024 * 1024)
    assert await store.append(run_id, "big", 0, len(data), data) == len(data)
    await store.end_stream(run_id, "big")
    batch = await read_all(store, run_id, "big")
    assert joined(batch.chunks) == data
    assert batch.final == StreamState(len(data), True)


async def test_streams_and_runs_are_independent(store: Store) -> None:
    run_a, run_b = uuid.uuid4().hex, uuid.uuid4().hex
    await store.append(run_a, "s", 0, 1, b"a")
    await store.append(run_b, "s", 0, 2, b"bb")
    await store.append(run_a, "t", 0, 3, b"ttt")
    await store.end_stream(run_a, "s")

    assert await store.state(run_a, "s") == StreamState(1, True)
    assert await store.state(run_b, "s") == StreamState(2, False)
    assert await store.state(run_a, "t") == StreamState(3, False)


async def test_state_of_an_unknown_stream(store: Store, run_id: str) -> None:
    assert await store.state(run_id, "nothing") == StreamState(0, False, None)


async def test_stream_names_with_odd_characters(store: Store, run_id: str) -> None:
    for name in ("a:b", "with space", "ünïcødé", "{braces}", "s:meta"):
        await store.append(run_id, name, 0, 1, name.encode()[:1])
        assert await store.state(run_id, name) == StreamState(1)
    assert await store.get_fields(run_id) == {}


# -------------------------------------------------------------- reader cursors
async def test_read_records_the_reader_cursor_only_forward(
    store: Store, run_id: str
) -> None:
    await store.append(run_id, "s", 0, 3, values(0, 1, 2))
    await store.append(run_id, "s", 3, 2, values(3, 4))
    assert await store.cursors(run_id, "s") == {}
    await store.read(run_id, "s", 2, timeout=1)  # no reader: nothing recorded
    assert await store.cursors(run_id, "s") == {}

    batch = await store.read(run_id, "s", 0, timeout=1, reader="r")
    assert joined(batch.chunks) == values(0, 1, 2, 3, 4)  # reads as without reader
    assert await store.cursors(run_id, "s") == {"r": 0}
    await store.read(run_id, "s", 3, timeout=1, reader="r")
    assert await store.cursors(run_id, "s") == {"r": 3}
    # Reading again from earlier (a retry) never moves the cursor back.
    batch = await store.read(run_id, "s", 1, timeout=1, reader="r")
    assert joined(batch.chunks, 1) == values(1, 2, 3, 4)
    await store.read(run_id, "s", 0, timeout=0, reader="r")
    assert await store.cursors(run_id, "s") == {"r": 3}
    # A read that finds nothing still records that everything before was consumed.
    batch = await store.read(run_id, "s", 5, timeout=0, reader="r")
    assert list(batch.chunks) == []
    assert await store.cursors(run_id, "s") == {"r": 5}
    # Cursors belong to one stream of one run.
    assert await store.cursors(run_id, "t") == {}
    assert await store.cursors(uuid.uuid4().hex, "s") == {}


async def test_cursors_of_two_readers(
    store_factory: Callable[[], Store], store: Store, run_id: str
) -> None:
    other = store_factory()  # a reader in another process
    for i in range(0, 6, 2):
        await store.append(run_id, "s", i, 2, values(i, i + 1))
    await store.end_stream(run_id, "s")

    async def consume(reader: Store, name: str, stop: int) -> None:
        position = 0
        while position < stop:
            batch = await reader.read(run_id, "s", position, timeout=1, reader=name)
            position = batch.chunks[0].stop  # one chunk at a time
        await reader.read(run_id, "s", position, timeout=1, reader=name)

    try:
        await consume(store, "fast", 6)
        await consume(other, "slow", 2)
        await store.read(run_id, "t", 0, timeout=0, reader="fast")
        for observer in (store, other):
            assert await observer.cursors(run_id, "s") == {"fast": 6, "slow": 2}
            assert await observer.cursors(run_id, "t") == {"fast": 0}
    finally:
        if other is not store:
            await other.aclose()


async def test_a_blocked_read_has_recorded_its_cursor(
    store_factory: Callable[[], Store], store: Store, run_id: str
) -> None:
    observer = store_factory()
    await store.append(run_id, "s", 0, 2, values(0, 1))
    results: list[Batch] = []

    async def reader() -> None:
        results.append(await store.read(run_id, "s", 2, timeout=30, reader="r"))

    try:
        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg:
                tg.start_soon(reader)
                await wait_all_tasks_blocked()
                # Blocked here may still mean "waiting for the server's answer":
                # the cursor shows once the read's script ran, before it waits.
                while await observer.cursors(run_id, "s") != {"r": 2}:  # noqa: ASYNC110
                    await anyio.sleep(0.01)
                assert not results  # the reader still waits for a value
                await store.append(run_id, "s", 2, 1, values(2))
    finally:
        if observer is not store:
            await observer.aclose()
    assert joined(results[0].chunks, 2) == values(2)


# --------------------------------------------------------------------- trimming
async def test_trim_drops_the_chunks_before_a_position(
    store: Store, run_id: str
) -> None:
    for start, count in ((0, 2), (2, 1), (3, 3), (6, 2)):
        await store.append(
            run_id, "s", start, count, values(*range(start, start + count))
        )

    await store.trim(run_id, "s", 4)  # (0, 2) and (2, 1) go; (3, 3) still holds 4, 5
    assert await store.state(run_id, "s") == StreamState(8)
    batch = await store.read(run_id, "s", 0, timeout=1)
    assert [(c.start, c.count) for c in batch.chunks] == [(3, 3), (6, 2)]
    assert joined(batch.chunks) == values(3, 4, 5, 6, 7)
    batch = await store.read(run_id, "s", 5, timeout=1)
    assert joined(batch.chunks, 5) == values(5, 6, 7)

    await store.trim(run_id, "s", 6)  # a chunk ending at ``before`` goes too
    batch = await store.read(run_id, "s", 1, timeout=1)
    assert [(c.start, c.count) for c in batch.chunks] == [(6, 2)]
    await store.trim(run_id, "s", 2)  # behind what is gone already: nothing to do
    await store.trim(run_id, "s", 0)
    assert await store.state(run_id, "s") == StreamState(8)
    # Appending goes on as before, re-runs included.
    assert await store.append(run_id, "s", 0, 2, values(0, 1)) == 8
    assert await store.append(run_id, "s", 8, 1, values(8)) == 9
    batch = await store.read(run_id, "s", 0, timeout=1)
    assert joined(batch.chunks) == values(6, 7, 8)


async def test_trim_of_every_chunk_keeps_the_length(store: Store, run_id: str) -> None:
    await store.append(run_id, "s", 0, 2, values(0, 1))
    await store.append(run_id, "s", 2, 2, values(2, 3))

    await store.trim(run_id, "s", 4)
    assert await store.state(run_id, "s") == StreamState(4)
    # Nothing is held from 0 on: a read waits like one past the values.
    started = anyio.current_time()
    batch = await store.read(run_id, "s", 0, timeout=0.2)
    assert list(batch.chunks) == []
    assert batch.final is None
    assert anyio.current_time() - started >= 0.15

    assert await store.append(run_id, "s", 1, 3, values(1, 2, 3)) == 4  # a re-run
    with pytest.raises(StoreError):
        await store.append(run_id, "s", 5, 1, values(5))
    assert await store.append(run_id, "s", 4, 1, values(4)) == 5
    batch = await store.read(run_id, "s", 0, timeout=1)
    assert [(c.start, c.count) for c in batch.chunks] == [(4, 1)]

    await store.trim(run_id, "s", 100)
    assert await store.state(run_id, "s") == StreamState(5)
    assert await store.append_at_end(run_id, "s", 1, values(5)) == 5
    await store.trim(run_id, "s", 6)
    assert await store.end_stream(run_id, "s") is True
    assert await store.state(run_id, "s") == StreamState(6, True)
    with anyio.fail_after(2):
        batch = await store.read(run_id, "s", 0, timeout=30)
    assert batch == Batch([], StreamState(6, True))


async def test_trim_keeps_the_end(store: Store, run_id: str) -> None:
    await store.append(run_id, "s", 0, 3, values(0, 1, 2))
    await store.end_stream(run_id, "s", b"it failed")

    await store.trim(run_id, "s", 3)
    await store.trim(run_id, "s", 10)
    assert await store.state(run_id, "s") == StreamState(3, True, b"it failed")
    with anyio.fail_after(2):
        batch = await store.read(run_id, "s", 0, timeout=30)
    assert list(batch.chunks) == []
    assert batch.final == StreamState(3, True, b"it failed")
    assert await store.append(run_id, "s", 0, 3, values(0, 1, 2)) == 3
    with pytest.raises(StreamClosedError):
        await store.append(run_id, "s", 3, 1, values(3))
    assert await store.end_stream(run_id, "s", b"later") is False
    assert await store.state(run_id, "s") == StreamState(3, True, b"it failed")


async def test_trim_of_an_unknown_stream(store: Store, run_id: str) -> None:
    await store.trim(run_id, "nothing", 10)
    assert await store.state(run_id, "nothing") == StreamState(0)
    assert await store.append(run_id, "nothing", 0, 1, values(0)) == 1


# -------------------------------------------------------- appending at the end
async def test_append_at_end_returns_the_start(store: Store, run_id: str) -> None:
    assert await store.append_at_end(run_id, "s", 2, values(0, 1)) == 0
    assert await store.append_at_end(run_id, "s", 3, values(2, 3, 4)) == 2
    assert await store.append(run_id, "s", 5, 1, values(5)) == 6  # mixes with append
    assert await store.append_at_end(run_id, "s", 0, b"") == 6  # nothing to write
    assert await store.append_at_end(run_id, "s", 1, values(6)) == 6
    assert await store.state(run_id, "s") == StreamState(7)
    batch = await store.read(run_id, "s", 0, timeout=1)
    assert [(c.start, c.count) for c in batch.chunks] == [
        (0, 2),
        (2, 3),
        (5, 1),
        (6, 1),
    ]
    assert joined(batch.chunks) == values(0, 1, 2, 3, 4, 5, 6)


async def test_append_at_end_after_end_raises(store: Store, run_id: str) -> None:
    await store.append_at_end(run_id, "s", 2, values(0, 1))
    await store.end_stream(run_id, "s")
    with pytest.raises(StreamClosedError) as info:
        await store.append_at_end(run_id, "s", 1, values(2))
    assert run_id in str(info.value)
    assert await store.state(run_id, "s") == StreamState(2, True)


async def test_append_at_end_wakes_a_blocked_reader(
    store_factory: Callable[[], Store], store: Store, run_id: str
) -> None:
    writer = store_factory()
    results: list[Batch] = []

    async def reader() -> None:
        results.append(await store.read(run_id, "s", 0, timeout=30))

    try:
        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg:
                tg.start_soon(reader)
                await wait_all_tasks_blocked()
                assert await writer.append_at_end(run_id, "s", 2, values(8, 9)) == 0
    finally:
        if writer is not store:
            await writer.aclose()
    assert joined(results[0].chunks) == values(8, 9)


async def test_concurrent_append_at_end_gives_each_batch_its_own_positions(
    store_factory: Callable[[], Store], store: Store, run_id: str
) -> None:
    # Ten instances of a scaled-out processor share their output stream.
    n_producers, sizes = 10, (3, 1, 4, 1, 5, 2)
    spans: list[tuple[int, int, int]] = []  # start, count, producer
    seen: list[Batch] = []

    async def produce(producer: Store, number: int) -> None:
        for size in sizes:
            start = await producer.append_at_end(
                run_id, "s", size, bytes([number]) * size
            )
            spans.append((start, size, number))
            await checkpoint()

    async def read() -> None:
        seen.append(await read_all(store, run_id, "s", timeout=30))

    producers = [store_factory() for _ in range(n_producers)]
    try:
        with anyio.fail_after(30):
            async with anyio.create_task_group() as tg:
                tg.start_soon(read)
                async with anyio.create_task_group() as writers:
                    for number, producer in enumerate(producers):
                        writers.start_soon(produce, producer, number)
                await store.end_stream(run_id, "s")
    finally:
        for producer in producers:
            if producer is not store:
                await producer.aclose()

    total = n_producers * sum(sizes)
    spans.sort()
    assert [start for start, _, _ in spans] == [0] + [
        start + count for start, count, _ in spans[:-1]
    ], "batches must be contiguous and must not overlap"
    assert spans[-1][0] + spans[-1][1] == total
    assert seen[0].final == StreamState(total, True)
    assert joined(seen[0].chunks) == b"".join(bytes([n]) * c for _, c, n in spans)


# ---------------------------------------------------------------------- taking
async def test_take_hands_out_at_most_max_count_of_one_chunk(
    store: Store, run_id: str
) -> None:
    await store.append(run_id, "s", 0, 5, values(0, 1, 2, 3, 4))
    await store.append(run_id, "s", 5, 2, values(5, 6))

    share = await store.take(run_id, "s", "g", 2, timeout=1)
    assert share == Share(Chunk(0, 5, values(0, 1, 2, 3, 4)), 0, 2)
    share = await store.take(run_id, "s", "g", 10, timeout=1)
    assert (share.start, share.stop) == (2, 5)  # never past the end of its chunk
    assert share.chunk == Chunk(0, 5, values(0, 1, 2, 3, 4))
    share = await store.take(run_id, "s", "g", 10, timeout=1)
    assert share == Share(Chunk(5, 2, values(5, 6)), 5, 7)
    with anyio.fail_after(2):
        share = await store.take(run_id, "s", "g", 10, timeout=0)
    assert share == Share(None, 7, 7)
    assert await store.cursors(run_id, "s") == {"g": 7}


async def test_take_returns_the_end_once_the_group_took_everything(
    store: Store, run_id: str
) -> None:
    await store.append(run_id, "s", 0, 2, values(0, 1))
    await store.end_stream(run_id, "s", b"it failed")

    share = await store.take(run_id, "s", "g", 5, timeout=1)
    assert (share.start, share.stop) == (0, 2)
    with anyio.fail_after(2):  # no waiting at the end
        share = await store.take(run_id, "s", "g", 5, timeout=30)
        assert share == Share(None, 2, 2, StreamState(2, True, b"it failed"))
        share = await store.take(run_id, "s", "g", 5, timeout=30)
        assert share == Share(None, 2, 2, StreamState(2, True, b"it failed"))
        await store.end_stream(run_id, "empty")
        share = await store.take(run_id, "empty", "g", 5, timeout=30)
        assert share == Share(None, 0, 0, StreamState(0, True))


async def test_take_waits_then_wakes_on_append_and_end(
    store_factory: Callable[[], Store], store: Store, run_id: str
) -> None:
    started = anyio.current_time()
    assert await store.take(run_id, "s", "g", 3, timeout=0.2) == Share(None, 0, 0)
    assert anyio.current_time() - started >= 0.15

    writer = store_factory()
    shares: list[Share] = []

    async def member() -> None:
        shares.append(await store.take(run_id, "s", "g", 3, timeout=30))

    try:
        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg:
                tg.start_soon(member)
                await wait_all_tasks_blocked()
                assert shares == []
                await writer.append(run_id, "s", 0, 2, values(0, 1))
            assert shares == [Share(Chunk(0, 2, values(0, 1)), 0, 2)]
            async with anyio.create_task_group() as tg:
                tg.start_soon(member)
                await wait_all_tasks_blocked()
                assert len(shares) == 1
                await writer.end_stream(run_id, "s")
            assert shares[1] == Share(None, 2, 2, StreamState(2, True))
    finally:
        if writer is not store:
            await writer.aclose()


async def _take_all(
    member: Store, run_id: str, group: str, max_count: int
) -> list[int]:
    """Take values for one member until the stream ends; return their positions."""
    taken: list[int] = []
    while True:
        share = await member.take(run_id, "s", group, max_count, timeout=30)
        if share.final is not None:
            assert share.chunk is None
            assert share.start == share.stop == share.final.length
            return taken
        chunk = share.chunk
        assert chunk is not None, "take timed out before the stream ended"
        assert 1 <= share.stop - share.start <= max_count
        assert chunk.start <= share.start < share.stop <= chunk.stop
        for position in range(share.start, share.stop):
            assert chunk.data[position - chunk.start] == position % 256
        taken += range(share.start, share.stop)


async def _produce(
    store_factory: Callable[[], Store], run_id: str, n_batches: int
) -> int:
    """Append batches of 1 to 4 values (value = position % 256), then end.

    The producer has a store object of its own, as if in another process.
    """
    async with store_factory() as producer:
        return await _produce_with(producer, run_id, n_batches)


async def _produce_with(producer: Store, run_id: str, n_batches: int) -> int:
    position = 0
    for i in range(n_batches):
        count = 1 + i % 4
        data = bytes(p % 256 for p in range(position, position + count))
        if i % 2:
            assert await producer.append_at_end(run_id, "s", count, data) == position
        else:
            await producer.append(run_id, "s", position, count, data)
        position += count
        await checkpoint()  # let members catch up and block again
    await producer.end_stream(run_id, "s")
    return position


async def test_members_of_a_group_take_every_value_exactly_once(
    store_factory: Callable[[], Store], store: Store, run_id: str
) -> None:
    n_members, n_batches = 8, 80
    # Half the members share this process's store object, half have their own.
    members = [store if i % 2 else store_factory() for i in range(n_members)]
    taken: dict[int, list[int]] = {}
    total: list[int] = []

    async def member(i: int) -> None:
        taken[i] = await _take_all(members[i], run_id, "g", 1 + i % 3)

    async def producer() -> None:
        total.append(await _produce(store_factory, run_id, n_batches))

    try:
        with anyio.fail_after(30):
            async with anyio.create_task_group() as tg:
                for i in range(n_members):
                    tg.start_soon(member, i)
                await wait_all_tasks_blocked()
                tg.start_soon(producer)
    finally:
        for other in members:
            if other is not store:
                await other.aclose()

    everything = sorted(p for positions in taken.values() for p in positions)
    assert everything == list(range(total[0])), "each value goes to one member"
    for positions in taken.values():
        assert positions == sorted(positions), "a member takes in stream order"
    assert sum(1 for positions in taken.values() if positions) > 1
    assert await store.cursors(run_id, "s") == {"g": total[0]}


async def test_each_group_sees_every_value(
    store_factory: Callable[[], Store], store: Store, run_id: str
) -> None:
    groups = {"g1": 3, "g2": 2}  # members per group
    taken: dict[str, list[int]] = {name: [] for name in groups}
    total: list[int] = []

    async def member(group: str, max_count: int) -> None:
        taken[group] += await _take_all(store, run_id, group, max_count)

    async def reader() -> None:
        position = 0
        while True:
            batch = await store.read(run_id, "s", position, timeout=30, reader="r")
            if batch.chunks:
                position = batch.chunks[-1].stop
            if batch.final is not None:
                await store.read(run_id, "s", position, timeout=0, reader="r")
                return

    with anyio.fail_after(30):
        async with anyio.create_task_group() as tg:
            for group, n_members in groups.items():
                for i in range(n_members):
                    tg.start_soon(member, group, 1 + i)
            tg.start_soon(reader)
            await wait_all_tasks_blocked()
            total.append(await _produce(store_factory, run_id, 40))

    for group in groups:
        assert sorted(taken[group]) == list(range(total[0])), group
    assert await store.cursors(run_id, "s") == {
        "g1": total[0],
        "g2": total[0],
        "r": total[0],
    }


async def test_group_cursor_is_visible_in_cursors(
    store_factory: Callable[[], Store], store: Store, run_id: str
) -> None:
    observer = store_factory()
    try:
        await store.append(run_id, "s", 0, 4, values(0, 1, 2, 3))
        await store.read(run_id, "s", 1, timeout=0, reader="r")
        await store.take(run_id, "s", "g", 3, timeout=0)
        assert await observer.cursors(run_id, "s") == {"r": 1, "g": 3}
        await store.take(run_id, "s", "g", 3, timeout=0)
        await store.take(run_id, "s", "h", 1, timeout=0)
        assert await observer.cursors(run_id, "s") == {"r": 1, "g": 4, "h": 1}
    finally:
        if observer is not store:
            await observer.aclose()


async def test_take_skips_trimmed_positions(store: Store, run_id: str) -> None:
    await store.append(run_id, "s", 0, 2, values(0, 1))
    await store.append(run_id, "s", 2, 2, values(2, 3))
    await store.append(run_id, "s", 4, 2, values(4, 5))
    assert (await store.take(run_id, "s", "g", 1, timeout=0)).stop == 1

    await store.trim(run_id, "s", 4)
    share = await store.take(run_id, "s", "g", 5, timeout=0)
    assert share == Share(Chunk(4, 2, values(4, 5)), 4, 6)

    # Every value trimmed away before a group took any: it waits for new ones.
    await store.trim(run_id, "s", 6)
    started = anyio.current_time()
    assert await store.take(run_id, "s", "late", 5, timeout=0.2) == Share(None, 0, 0)
    assert anyio.current_time() - started >= 0.15
    await store.append(run_id, "s", 6, 1, values(6))
    share = await store.take(run_id, "s", "late", 5, timeout=1)
    assert share == Share(Chunk(6, 1, values(6)), 6, 7)


# ----------------------------------------------------------- fields and claims
async def test_fields(store: Store, run_id: str) -> None:
    assert await store.get_fields(run_id) == {}
    await store.set_fields(run_id, {"plan": b"\x00plan", "state:a": b"running"})
    await store.set_fields(run_id, {"state:a": b"done", "state:b": b"waiting"})

    assert await store.get_fields(run_id) == {
        "plan": b"\x00plan",
        "state:a": b"done",
        "state:b": b"waiting",
    }
    assert await store.get_fields(run_id, ["state:a", "missing", "plan"]) == {
        "state:a": b"done",
        "plan": b"\x00plan",
    }
    assert await store.get_fields(run_id, []) == {}
    assert await store.get_fields(uuid.uuid4().hex, ["plan"]) == {}


async def test_claim_has_exactly_one_winner(
    store_factory: Callable[[], Store], store: Store, run_id: str
) -> None:
    claimers = [store_factory() for _ in range(20)]
    wins: list[bool] = []

    async def claim(claimer: Store) -> None:
        wins.append(await claimer.claim(run_id, "dispatch:join"))

    async with anyio.create_task_group() as tg:
        for claimer in claimers:
            tg.start_soon(claim, claimer)
    for claimer in claimers:
        if claimer is not store:
            await claimer.aclose()

    assert sorted(wins) == [False] * 19 + [True]
    assert await store.claim(run_id, "dispatch:join") is False
    # Claims are per name and per run.
    assert await store.claim(run_id, "dispatch:other") is True
    assert await store.claim(uuid.uuid4().hex, "dispatch:join") is True


# --------------------------------------------------------------------- runs
async def test_list_runs_oldest_first_and_delete_run(store: Store) -> None:
    first, second, third = (uuid.uuid4().hex for _ in range(3))
    await store.set_fields(first, {"plan": b"1"})
    await store.append(first, "s", 0, 1, b"x")
    await store.append(second, "s", 0, 1, b"y")
    await store.claim(third, "c")
    await store.set_fields(second, {"plan": b"2"})  # a later write keeps the order

    assert await store.list_runs() == [first, second, third]

    await store.delete_run(first)
    assert await store.list_runs() == [second, third]
    assert await store.state(first, "s") == StreamState(0)
    assert await store.get_fields(first) == {}
    assert await store.claim(third, "c") is False
    await store.delete_run(third)
    assert await store.claim(third, "c") is True  # its claims went too
    assert await store.get_fields(second) == {"plan": b"2"}
    assert await store.state(second, "s") == StreamState(1)


async def test_delete_run_of_an_unknown_run(store: Store) -> None:
    await store.delete_run(uuid.uuid4().hex)


async def test_a_deleted_run_starts_afresh(store: Store, run_id: str) -> None:
    await store.append(run_id, "s", 0, 2, b"ab")
    await store.end_stream(run_id, "s")
    await store.delete_run(run_id)

    assert await store.append(run_id, "s", 0, 1, b"c") == 1
    assert await store.state(run_id, "s") == StreamState(1)
    assert run_id in await store.list_runs()


# ------------------------------------------------- resuming: reopen, delete_fields
async def test_reopen_takes_back_the_end_and_its_failure(
    store: Store, run_id: str
) -> None:
    await store.append(run_id, "s", 0, 2, values(0, 1))
    await store.end_stream(run_id, "s", b"boom")

    assert await store.reopen(run_id, "s") is True
    assert await store.state(run_id, "s") == StreamState(2, False, None)
    assert await store.reopen(run_id, "s") is False  # open already


async def test_a_reopened_stream_goes_on_by_position(store: Store, run_id: str) -> None:
    await store.append(run_id, "s", 0, 2, values(0, 1))
    await store.end_stream(run_id, "s", b"boom")
    await store.reopen(run_id, "s")

    # A re-run writes from 0 again: what the stream holds is kept, not doubled.
    assert await store.append(run_id, "s", 0, 2, values(0, 1)) == 2
    assert await store.append(run_id, "s", 2, 2, values(2, 3)) == 4
    await store.end_stream(run_id, "s")
    batch = await read_all(store, run_id, "s")
    assert b"".join(c.data for c in batch.chunks) == values(0, 1, 2, 3)
    assert batch.final == StreamState(4, True, None)


async def test_reopen_of_a_stream_trimmed_empty_keeps_its_length(
    store: Store, run_id: str
) -> None:
    await store.append(run_id, "s", 0, 3, values(0, 1, 2))
    await store.end_stream(run_id, "s", b"boom")
    await store.trim(run_id, "s", 3)
    await store.reopen(run_id, "s")

    assert await store.state(run_id, "s") == StreamState(3, False, None)
    assert await store.append(run_id, "s", 3, 1, values(3)) == 4


async def test_a_reader_blocked_on_a_reopened_stream_gets_new_values(
    store_factory: Callable[[], Store], store: Store, run_id: str
) -> None:
    await store.append(run_id, "s", 0, 1, values(0))
    await store.end_stream(run_id, "s", b"boom")
    await store.reopen(run_id, "s")
    got: list[Chunk] = []
    async with store_factory() as other, anyio.create_task_group() as tg:

        async def reader() -> None:
            batch = await other.read(run_id, "s", 1, timeout=5)
            got.extend(batch.chunks)

        tg.start_soon(reader)
        await anyio.wait_all_tasks_blocked()
        await store.append(run_id, "s", 1, 1, values(1))
    assert [c.data for c in got] == [values(1)]


async def test_delete_fields(store: Store, run_id: str) -> None:
    await store.set_fields(run_id, {"a": b"1", "b": b"2"})
    await store.delete_fields(run_id, ["a", "missing"])
    assert await store.get_fields(run_id) == {"b": b"2"}
    await store.delete_fields(run_id, [])
    await store.delete_fields(uuid.uuid4().hex, ["a"])  # an unknown run: nothing


class StoreContract:
    """Every test of this module, for the store of a subclass's ``store_factory``.

    Subclass it (as ``Test...``) and define the ``store_factory`` fixture (in the
    subclass, its module or a conftest): a function returning a store object on
    each call, all of them sharing their data.
    """

    pytestmark: ClassVar[Any] = pytest.mark.anyio

    @pytest.fixture(params=["asyncio", "trio"])
    def anyio_backend(self, request: pytest.FixtureRequest) -> str:
        """Each test on both event loops."""
        return str(request.param)

    @pytest.fixture
    async def store(
        self, store_factory: Callable[[], Store], anyio_backend: str
    ) -> AsyncIterator[Store]:
        """A store of ``store_factory``, open for the test."""
        async with store_factory() as fresh:
            yield fresh

    @pytest.fixture
    def run_id(self) -> str:
        """A run of the test's own."""
        return uuid.uuid4().hex


# The tests above are written as module functions (they read as a list of the
# contract's promises); the class carries them, so that pytest collects them
# for each subclass, with its fixtures.
for _name, _test in list(globals().items()):
    if _name.startswith("test_"):
        setattr(StoreContract, _name, staticmethod(_test))
