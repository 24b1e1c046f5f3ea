"""The contract's promises on one stream: appending, ending, reading."""

from __future__ import annotations

import os
import uuid
from typing import TYPE_CHECKING

import anyio
import pytest
from anyio import wait_all_tasks_blocked
from anyio.lowlevel import checkpoint

from datagraph.exceptions import StoreError, StreamClosedError
from datagraph.stores import Store, StreamState

from ._support import joined, other_store, other_stores, read_all, values, woken

if TYPE_CHECKING:
    from collections.abc import Callable


class StreamContract:
    """Appending by position, ending a stream once, and reading, blocked or not."""

    # ---------------------------------------------------------------- appending
    async def test_append_then_read_in_order(self, store: Store, run_id: str) -> None:
        assert await store.append(run_id, "s", 0, 2, values(0, 1)) == 2
        assert await store.append(run_id, "s", 2, 1, values(2)) == 3
        assert await store.append(run_id, "s", 3, 3, values(3, 4, 5)) == 6

        batch = await store.read(run_id, "s", 0, timeout=1)
        assert [(c.start, c.count) for c in batch.chunks] == [(0, 2), (2, 1), (3, 3)]
        assert joined(batch.chunks) == values(0, 1, 2, 3, 4, 5)
        assert batch.final is None
        assert await store.state(run_id, "s") == StreamState(6, ended=False, error=None)

    async def test_read_from_a_position_inside_a_chunk(
        self, store: Store, run_id: str
    ) -> None:
        await store.append(run_id, "s", 0, 3, values(0, 1, 2))
        await store.append(run_id, "s", 3, 3, values(3, 4, 5))

        batch = await store.read(run_id, "s", 4, timeout=1)
        # The first chunk may start before the position; the reader skips the rest.
        assert batch.chunks[0].start <= 4 < batch.chunks[0].stop
        assert joined(batch.chunks, 4) == values(4, 5)
        batch = await store.read(run_id, "s", 3, timeout=1)
        assert joined(batch.chunks, 3) == values(3, 4, 5)

    async def test_re_append_of_held_values_is_a_no_op(
        self, store: Store, run_id: str
    ) -> None:
        await store.append(run_id, "s", 0, 2, values(0, 1))
        await store.append(run_id, "s", 2, 2, values(2, 3))

        # A re-run writes the same positions again (even different bytes): ignored.
        assert await store.append(run_id, "s", 0, 2, b"XX") == 4
        assert await store.append(run_id, "s", 2, 2, b"YY") == 4
        assert await store.append(run_id, "s", 1, 3, b"ZZZ") == 4
        batch = await store.read(run_id, "s", 0, timeout=1)
        assert joined(batch.chunks) == values(0, 1, 2, 3)

    async def test_partial_overlap_writes_nothing_and_returns_length(
        self, store: Store, run_id: str
    ) -> None:
        await store.append(run_id, "s", 0, 3, values(0, 1, 2))

        assert await store.append(run_id, "s", 2, 3, values(2, 3, 4)) == 3
        assert await store.state(run_id, "s") == StreamState(3)
        # The caller then appends the part past the returned length.
        assert await store.append(run_id, "s", 3, 2, values(3, 4)) == 5
        batch = await store.read(run_id, "s", 0, timeout=1)
        assert joined(batch.chunks) == values(0, 1, 2, 3, 4)

    async def test_append_past_the_end_raises(self, store: Store, run_id: str) -> None:
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
        self, store_factory: Callable[[], Store], store: Store, run_id: str
    ) -> None:
        # Ten re-runs of one producer race; the stream still holds every value once.
        async def produce(producer: Store) -> None:
            position = 0
            for size in (3, 1, 4, 1, 5):
                data = bytes(range(position, position + size))
                length = await producer.append(run_id, "s", position, size, data)
                assert length >= position + size
                position += size

        async with (
            other_stores(store_factory, store, 10) as producers,
            anyio.create_task_group() as tg,
        ):
            for producer in producers:
                tg.start_soon(produce, producer)

        batch = await store.read(run_id, "s", 0, timeout=1)
        assert joined(batch.chunks) == bytes(range(14))

    async def test_empty_append_at_the_length_is_a_no_op(
        self, store: Store, run_id: str
    ) -> None:
        await store.append(run_id, "s", 0, 1, values(0))
        assert await store.append(run_id, "s", 1, 0, b"") == 1
        assert await store.state(run_id, "s") == StreamState(1)

    # ------------------------------------------------------------------- ending
    async def test_end_is_idempotent_and_the_first_call_wins(
        self, store: Store, run_id: str
    ) -> None:
        await store.append(run_id, "s", 0, 1, values(0))

        assert await store.end_stream(run_id, "s", b"first failure") is True
        assert await store.end_stream(run_id, "s", b"second failure") is False
        assert await store.end_stream(run_id, "s") is False
        assert await store.state(run_id, "s") == StreamState(1, True, b"first failure")
        batch = await store.read(run_id, "s", 0, timeout=1)
        assert batch.final == StreamState(1, True, b"first failure")

    async def test_end_without_error(self, store: Store, run_id: str) -> None:
        assert await store.end_stream(run_id, "s") is True
        assert await store.end_stream(run_id, "s", b"too late") is False
        assert await store.state(run_id, "s") == StreamState(0, True, None)

    @pytest.mark.parametrize(
        "error", [b"boom", b"\x00\xff\xfe binary \r\n", bytes(range(256)) * 40, b""]
    )
    async def test_error_bytes_are_preserved(
        self, store: Store, run_id: str, error: bytes
    ) -> None:
        await store.append(run_id, "s", 0, 2, values(0, 1))
        await store.end_stream(run_id, "s", error)

        state = await store.state(run_id, "s")
        assert state == StreamState(2, True, error)
        assert state.error is not None
        batch = await store.read(run_id, "s", 2, timeout=1)
        assert batch.final == StreamState(2, True, error)

    async def test_append_after_end_raises_stream_closed(
        self, store: Store, run_id: str
    ) -> None:
        await store.append(run_id, "s", 0, 2, values(0, 1))
        await store.end_stream(run_id, "s")

        with pytest.raises(StreamClosedError) as info:
            await store.append(run_id, "s", 2, 1, values(2))
        assert run_id in str(info.value)
        assert await store.state(run_id, "s") == StreamState(2, True)

    async def test_re_append_of_held_values_after_end_is_a_no_op(
        self, store: Store, run_id: str
    ) -> None:
        await store.append(run_id, "s", 0, 2, values(0, 1))
        await store.append(run_id, "s", 2, 1, values(2))
        await store.end_stream(run_id, "s")

        # A re-run of the producer writes its values again: nothing new, no error.
        assert await store.append(run_id, "s", 0, 2, values(0, 1)) == 3
        assert await store.append(run_id, "s", 1, 2, values(1, 2)) == 3

    async def test_partial_overlap_after_end_raises_stream_closed(
        self, store: Store, run_id: str
    ) -> None:
        # "the stream has ended and the batch holds new values": value 3 is new.
        await store.append(run_id, "s", 0, 3, values(0, 1, 2))
        await store.end_stream(run_id, "s")

        with pytest.raises(StreamClosedError):
            await store.append(run_id, "s", 2, 2, values(2, 3))

    # ------------------------------------------------------------------ reading
    async def test_read_of_an_unknown_stream_times_out_empty(
        self, store: Store, run_id: str
    ) -> None:
        started = anyio.current_time()
        batch = await store.read(run_id, "nothing", 0, timeout=0.2)
        elapsed = anyio.current_time() - started
        assert list(batch.chunks) == []
        assert batch.final is None
        assert 0.15 <= elapsed < 5

    async def test_read_past_the_values_times_out_empty(
        self, store: Store, run_id: str
    ) -> None:
        await store.append(run_id, "s", 0, 2, values(0, 1))
        started = anyio.current_time()
        batch = await store.read(run_id, "s", 2, timeout=0.2)
        assert list(batch.chunks) == []
        assert batch.final is None
        assert anyio.current_time() - started >= 0.15

    async def test_read_with_zero_timeout_returns_at_once(
        self, store: Store, run_id: str
    ) -> None:
        with anyio.fail_after(2):
            batch = await store.read(run_id, "s", 0, timeout=0)
        assert list(batch.chunks) == []
        await store.append(run_id, "s", 0, 1, values(0))
        batch = await store.read(run_id, "s", 0, timeout=0)
        assert joined(batch.chunks) == values(0)

    async def test_available_values_are_returned_without_waiting(
        self, store: Store, run_id: str
    ) -> None:
        await store.append(run_id, "s", 0, 1, values(0))
        with anyio.fail_after(2):  # a long timeout must not delay a ready answer
            batch = await store.read(run_id, "s", 0, timeout=30)
        assert joined(batch.chunks) == values(0)

    async def test_blocked_read_is_woken_by_an_append(
        self, store: Store, run_id: str
    ) -> None:
        await store.append(run_id, "s", 0, 1, values(0))
        batch = await woken(
            lambda: store.read(run_id, "s", 1, timeout=30),
            lambda: store.append(run_id, "s", 1, 2, values(1, 2)),
        )
        assert joined(batch.chunks, 1) == values(1, 2)

    async def test_blocked_read_is_woken_by_another_store_object(
        self, store_factory: Callable[[], Store], store: Store, run_id: str
    ) -> None:
        async with other_store(store_factory, store) as writer:
            batch = await woken(
                lambda: store.read(run_id, "s", 0, timeout=30),
                lambda: writer.append(run_id, "s", 0, 1, values(7)),
            )
        assert joined(batch.chunks) == values(7)

    async def test_end_wakes_a_blocked_reader(self, store: Store, run_id: str) -> None:
        await store.append(run_id, "s", 0, 2, values(0, 1))
        batch = await woken(
            lambda: store.read(run_id, "s", 2, timeout=30),
            lambda: store.end_stream(run_id, "s", b"it failed"),
        )
        assert list(batch.chunks) == []
        assert batch.final == StreamState(2, True, b"it failed")

    async def test_end_is_visible_to_readers(self, store: Store, run_id: str) -> None:
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

    async def test_end_of_an_empty_stream(self, store: Store, run_id: str) -> None:
        await store.end_stream(run_id, "s")
        with anyio.fail_after(2):
            batch = await store.read(run_id, "s", 0, timeout=30)
        assert list(batch.chunks) == []
        assert batch.final == StreamState(0, True, None)

    async def test_many_concurrent_readers_all_see_everything(
        self, store: Store, run_id: str
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
        self, store: Store, run_id: str
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

    async def test_read_returns_many_chunks_per_call(
        self, store: Store, run_id: str
    ) -> None:
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

    async def test_large_batch(self, store: Store, run_id: str) -> None:
        data = os.urandom(1024 * 1024)
        assert await store.append(run_id, "big", 0, len(data), data) == len(data)
        await store.end_stream(run_id, "big")
        batch = await read_all(store, run_id, "big")
        assert joined(batch.chunks) == data
        assert batch.final == StreamState(len(data), True)

    async def test_streams_and_runs_are_independent(self, store: Store) -> None:
        run_a, run_b = uuid.uuid4().hex, uuid.uuid4().hex
        await store.append(run_a, "s", 0, 1, b"a")
        await store.append(run_b, "s", 0, 2, b"bb")
        await store.append(run_a, "t", 0, 3, b"ttt")
        await store.end_stream(run_a, "s")

        assert await store.state(run_a, "s") == StreamState(1, True)
        assert await store.state(run_b, "s") == StreamState(2, False)
        assert await store.state(run_a, "t") == StreamState(3, False)

    async def test_state_of_an_unknown_stream(self, store: Store, run_id: str) -> None:
        assert await store.state(run_id, "nothing") == StreamState(0, False, None)

    async def test_stream_names_with_odd_characters(
        self, store: Store, run_id: str
    ) -> None:
        for name in ("a:b", "with space", "ünïcødé", "{braces}", "s:meta"):
            await store.append(run_id, name, 0, 1, name.encode()[:1])
            assert await store.state(run_id, name) == StreamState(1)
        assert await store.get_fields(run_id) == {}
