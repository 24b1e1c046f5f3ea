"""The contract's promises on shared output and consumer groups."""

from __future__ import annotations

from typing import TYPE_CHECKING

import anyio
import pytest
from anyio import wait_all_tasks_blocked
from anyio.lowlevel import checkpoint

from datagraph.exceptions import StreamClosedError
from datagraph.stores import Batch, Chunk, Store, StreamState
from datagraph.stores._base import Share

from ._support import joined, other_store, other_stores, read_all, values, woken

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable


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


class GroupContract:
    """``append_at_end`` for producers that share a stream, ``take`` for groups."""

    # ---------------------------------------------------- appending at the end
    async def test_append_at_end_returns_the_start(
        self, store: Store, run_id: str
    ) -> None:
        assert await store.append_at_end(run_id, "s", 2, values(0, 1)) == 0
        assert await store.append_at_end(run_id, "s", 3, values(2, 3, 4)) == 2
        # append_at_end and append mix on one stream.
        assert await store.append(run_id, "s", 5, 1, values(5)) == 6
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

    async def test_append_at_end_after_end_raises(
        self, store: Store, run_id: str
    ) -> None:
        await store.append_at_end(run_id, "s", 2, values(0, 1))
        await store.end_stream(run_id, "s")
        with pytest.raises(StreamClosedError) as info:
            await store.append_at_end(run_id, "s", 1, values(2))
        assert run_id in str(info.value)
        assert await store.state(run_id, "s") == StreamState(2, True)

    async def test_append_at_end_wakes_a_blocked_reader(
        self, store_factory: Callable[[], Store], store: Store, run_id: str
    ) -> None:
        async def append() -> None:
            assert await writer.append_at_end(run_id, "s", 2, values(8, 9)) == 0

        async with other_store(store_factory, store) as writer:
            batch = await woken(lambda: store.read(run_id, "s", 0, timeout=30), append)
        assert joined(batch.chunks) == values(8, 9)

    async def test_concurrent_append_at_end_gives_each_batch_its_own_positions(
        self, store_factory: Callable[[], Store], store: Store, run_id: str
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

        async with other_stores(store_factory, store, n_producers) as producers:
            with anyio.fail_after(30):
                async with anyio.create_task_group() as tg:
                    tg.start_soon(read)
                    async with anyio.create_task_group() as writers:
                        for number, producer in enumerate(producers):
                            writers.start_soon(produce, producer, number)
                    await store.end_stream(run_id, "s")

        total = n_producers * sum(sizes)
        spans.sort()
        assert [start for start, _, _ in spans] == [0] + [
            start + count for start, count, _ in spans[:-1]
        ], "batches must be contiguous and must not overlap"
        assert spans[-1][0] + spans[-1][1] == total
        assert seen[0].final == StreamState(total, True)
        assert joined(seen[0].chunks) == b"".join(bytes([n]) * c for _, c, n in spans)

    # ------------------------------------------------------------------ taking
    async def test_take_hands_out_at_most_max_count_of_one_chunk(
        self, store: Store, run_id: str
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
        self, store: Store, run_id: str
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
        self, store_factory: Callable[[], Store], store: Store, run_id: str
    ) -> None:
        started = anyio.current_time()
        assert await store.take(run_id, "s", "g", 3, timeout=0.2) == Share(None, 0, 0)
        assert anyio.current_time() - started >= 0.15

        def take() -> Awaitable[Share]:
            return store.take(run_id, "s", "g", 3, timeout=30)

        async with other_store(store_factory, store) as writer:
            share = await woken(
                take, lambda: writer.append(run_id, "s", 0, 2, values(0, 1))
            )
            assert share == Share(Chunk(0, 2, values(0, 1)), 0, 2)
            share = await woken(take, lambda: writer.end_stream(run_id, "s"))
            assert share == Share(None, 2, 2, StreamState(2, True))

    async def test_members_of_a_group_take_every_value_exactly_once(
        self, store_factory: Callable[[], Store], store: Store, run_id: str
    ) -> None:
        n_members, n_batches = 8, 80
        taken: dict[int, list[int]] = {}
        total: list[int] = []

        async def member(i: int, member_store: Store) -> None:
            taken[i] = await _take_all(member_store, run_id, "g", 1 + i % 3)

        async def producer() -> None:
            total.append(await _produce(store_factory, run_id, n_batches))

        async with other_stores(store_factory, store, n_members // 2) as others:
            # Half the members share this process's store object, half have their own.
            members = [store if i % 2 else others[i // 2] for i in range(n_members)]
            with anyio.fail_after(30):
                async with anyio.create_task_group() as tg:
                    for i, member_store in enumerate(members):
                        tg.start_soon(member, i, member_store)
                    await wait_all_tasks_blocked()
                    tg.start_soon(producer)

        everything = sorted(p for positions in taken.values() for p in positions)
        assert everything == list(range(total[0])), "each value goes to one member"
        for positions in taken.values():
            assert positions == sorted(positions), "a member takes in stream order"
        assert sum(1 for positions in taken.values() if positions) > 1
        assert await store.cursors(run_id, "s") == {"g": total[0]}

    async def test_each_group_sees_every_value(
        self, store_factory: Callable[[], Store], store: Store, run_id: str
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
        self, store_factory: Callable[[], Store], store: Store, run_id: str
    ) -> None:
        async with other_store(store_factory, store) as observer:
            await store.append(run_id, "s", 0, 4, values(0, 1, 2, 3))
            await store.read(run_id, "s", 1, timeout=0, reader="r")
            await store.take(run_id, "s", "g", 3, timeout=0)
            assert await observer.cursors(run_id, "s") == {"r": 1, "g": 3}
            await store.take(run_id, "s", "g", 3, timeout=0)
            await store.take(run_id, "s", "h", 1, timeout=0)
            assert await observer.cursors(run_id, "s") == {"r": 1, "g": 4, "h": 1}

    async def test_take_skips_trimmed_positions(
        self, store: Store, run_id: str
    ) -> None:
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
        share = await store.take(run_id, "s", "late", 5, timeout=0.2)
        assert share == Share(None, 0, 0)
        assert anyio.current_time() - started >= 0.15
        await store.append(run_id, "s", 6, 1, values(6))
        share = await store.take(run_id, "s", "late", 5, timeout=1)
        assert share == Share(Chunk(6, 1, values(6)), 6, 7)
