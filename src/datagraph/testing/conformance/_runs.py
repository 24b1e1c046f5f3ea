"""The contract's promises on a run's fields, claims, lifetime and resumption."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING

import anyio

from datagraph.stores import Chunk, Store, StreamState

from ._support import other_stores, read_all, values

if TYPE_CHECKING:
    from collections.abc import Callable


class RunContract:
    """Fields and claims, listing and deleting runs, reopening streams to resume."""

    # ------------------------------------------------------- fields and claims
    async def test_fields(self, store: Store, run_id: str) -> None:
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
        self, store_factory: Callable[[], Store], store: Store, run_id: str
    ) -> None:
        wins: list[bool] = []

        async def claim(claimer: Store) -> None:
            wins.append(await claimer.claim(run_id, "dispatch:join"))

        async with (
            other_stores(store_factory, store, 20) as claimers,
            anyio.create_task_group() as tg,
        ):
            for claimer in claimers:
                tg.start_soon(claim, claimer)

        assert sorted(wins) == [False] * 19 + [True]
        assert await store.claim(run_id, "dispatch:join") is False
        # Claims are per name and per run.
        assert await store.claim(run_id, "dispatch:other") is True
        assert await store.claim(uuid.uuid4().hex, "dispatch:join") is True

    # ----------------------------------------------------------------- runs
    async def test_list_runs_oldest_first_and_delete_run(self, store: Store) -> None:
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

    async def test_delete_run_of_an_unknown_run(self, store: Store) -> None:
        await store.delete_run(uuid.uuid4().hex)

    async def test_a_deleted_run_starts_afresh(self, store: Store, run_id: str) -> None:
        await store.append(run_id, "s", 0, 2, b"ab")
        await store.end_stream(run_id, "s")
        await store.delete_run(run_id)

        assert await store.append(run_id, "s", 0, 1, b"c") == 1
        assert await store.state(run_id, "s") == StreamState(1)
        assert run_id in await store.list_runs()

    # --------------------------------------------- resuming: reopen, delete_fields
    async def test_reopen_takes_back_the_end_and_its_failure(
        self, store: Store, run_id: str
    ) -> None:
        await store.append(run_id, "s", 0, 2, values(0, 1))
        await store.end_stream(run_id, "s", b"boom")

        assert await store.reopen(run_id, "s") is True
        assert await store.state(run_id, "s") == StreamState(2, False, None)
        assert await store.reopen(run_id, "s") is False  # open already

    async def test_a_reopened_stream_goes_on_by_position(
        self, store: Store, run_id: str
    ) -> None:
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
        self, store: Store, run_id: str
    ) -> None:
        await store.append(run_id, "s", 0, 3, values(0, 1, 2))
        await store.end_stream(run_id, "s", b"boom")
        await store.trim(run_id, "s", 3)
        await store.reopen(run_id, "s")

        assert await store.state(run_id, "s") == StreamState(3, False, None)
        assert await store.append(run_id, "s", 3, 1, values(3)) == 4

    async def test_a_reader_blocked_on_a_reopened_stream_gets_new_values(
        self, store_factory: Callable[[], Store], store: Store, run_id: str
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

    async def test_delete_fields(self, store: Store, run_id: str) -> None:
        await store.set_fields(run_id, {"a": b"1", "b": b"2"})
        await store.delete_fields(run_id, ["a", "missing"])
        assert await store.get_fields(run_id) == {"b": b"2"}
        await store.delete_fields(run_id, [])
        await store.delete_fields(uuid.uuid4().hex, ["a"])  # an unknown run: nothing
