"""The contract's promises on reader cursors and trimming."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING

import anyio
import pytest
from anyio import wait_all_tasks_blocked

from datagraph.exceptions import StoreError, StreamClosedError
from datagraph.stores import Batch, Store, StreamState

from ._support import joined, other_store, values

if TYPE_CHECKING:
    from collections.abc import Callable


class CursorContract:
    """Reader cursors recorded by ``read``, and ``trim`` dropping what came before."""

    # ---------------------------------------------------------- reader cursors
    async def test_read_records_the_reader_cursor_only_forward(
        self, store: Store, run_id: str
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
        self, store_factory: Callable[[], Store], store: Store, run_id: str
    ) -> None:
        for i in range(0, 6, 2):
            await store.append(run_id, "s", i, 2, values(i, i + 1))
        await store.end_stream(run_id, "s")

        async def consume(reader: Store, name: str, stop: int) -> None:
            position = 0
            while position < stop:
                batch = await reader.read(run_id, "s", position, timeout=1, reader=name)
                position = batch.chunks[0].stop  # one chunk at a time
            await reader.read(run_id, "s", position, timeout=1, reader=name)

        async with other_store(store_factory, store) as other:  # another process
            await consume(store, "fast", 6)
            await consume(other, "slow", 2)
            await store.read(run_id, "t", 0, timeout=0, reader="fast")
            for observer in (store, other):
                assert await observer.cursors(run_id, "s") == {"fast": 6, "slow": 2}
                assert await observer.cursors(run_id, "t") == {"fast": 0}

    async def test_a_blocked_read_has_recorded_its_cursor(
        self, store_factory: Callable[[], Store], store: Store, run_id: str
    ) -> None:
        await store.append(run_id, "s", 0, 2, values(0, 1))
        results: list[Batch] = []

        async def reader() -> None:
            results.append(await store.read(run_id, "s", 2, timeout=30, reader="r"))

        async with other_store(store_factory, store) as observer:
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
        assert joined(results[0].chunks, 2) == values(2)

    # ----------------------------------------------------------------- trimming
    async def test_trim_drops_the_chunks_before_a_position(
        self, store: Store, run_id: str
    ) -> None:
        for start, count in ((0, 2), (2, 1), (3, 3), (6, 2)):
            await store.append(
                run_id, "s", start, count, values(*range(start, start + count))
            )

        # (0, 2) and (2, 1) go; (3, 3) still holds 4, 5.
        await store.trim(run_id, "s", 4)
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

    async def test_trim_of_every_chunk_keeps_the_length(
        self, store: Store, run_id: str
    ) -> None:
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

    async def test_trim_keeps_the_end(self, store: Store, run_id: str) -> None:
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

    async def test_trim_of_an_unknown_stream(self, store: Store, run_id: str) -> None:
        await store.trim(run_id, "nothing", 10)
        assert await store.state(run_id, "nothing") == StreamState(0)
        assert await store.append(run_id, "nothing", 0, 1, values(0)) == 1
