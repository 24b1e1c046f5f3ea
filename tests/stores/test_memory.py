"""MemoryStore on its own: what it promises beyond the store contract.

Retention follows the module's clock, replaced here by one the test moves, so no
test waits for time to pass.
"""

from __future__ import annotations

import time
import uuid

import anyio
import pytest
from anyio import wait_all_tasks_blocked

from datagraph.exceptions import StoreConfigError, ValueTooLargeError
from datagraph.stores import StreamState, memory
from datagraph.stores.memory import MemoryStore

pytestmark = pytest.mark.anyio

RETENTION = 100.0


class Clock:
    """Stands in for the ``time`` module of ``datagraph.stores.memory``."""

    def __init__(self) -> None:
        self.now = time.monotonic()

    def monotonic(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    fake = Clock()
    monkeypatch.setattr(memory, "time", fake)
    return fake


@pytest.fixture
def run_id() -> str:
    return uuid.uuid4().hex


# ----------------------------------------------------------------- retention
async def test_a_run_is_forgotten_retention_seconds_after_its_last_write(
    clock: Clock, run_id: str
) -> None:
    store = MemoryStore(retention=RETENTION)
    await store.append(run_id, "s", 0, 1, b"x")
    await store.set_fields(run_id, {"plan": b"p"})

    clock.now += RETENTION - 1
    await store.append(run_id, "s", 1, 1, b"y")  # a write keeps the run
    clock.now += RETENTION - 1
    assert await store.list_runs() == [run_id]
    assert await store.state(run_id, "s") == StreamState(2)
    assert await store.get_fields(run_id) == {"plan": b"p"}

    clock.now += 2  # past retention since the last write
    assert await store.state(run_id, "s") == StreamState(0)
    assert await store.get_fields(run_id) == {}
    assert await store.list_runs() == []


async def test_a_new_run_sweeps_the_expired_ones(clock: Clock) -> None:
    store = MemoryStore(retention=RETENTION)
    for old in ("a", "b"):
        await store.set_fields(old, {"k": b"v"})
    clock.now += RETENTION + 1
    await store.set_fields("c", {"k": b"v"})
    assert repr(store) == f"MemoryStore(runs=1, retention={RETENTION})"
    assert await store.list_runs() == ["c"]


@pytest.mark.parametrize("retention", [0, -1.0])
def test_retention_must_be_positive(retention: float) -> None:
    with pytest.raises(StoreConfigError, match="retention must be a positive number"):
        MemoryStore(retention=retention)


# ---------------------------------------------------------------- value size
@pytest.mark.parametrize("size", [0, -1, 1.5])
def test_max_value_size_must_be_a_positive_integer(size: int) -> None:
    with pytest.raises(StoreConfigError, match="max_value_size must be a positive"):
        MemoryStore(max_value_size=size)


async def test_an_entry_over_max_value_size_is_refused_and_not_written(
    run_id: str,
) -> None:
    store = MemoryStore(max_value_size=4)
    assert await store.append(run_id, "s", 0, 2, b"abcd") == 2  # at the limit
    with pytest.raises(ValueTooLargeError) as info:
        await store.append(run_id, "s", 2, 1, b"abcde")
    assert (info.value.size, info.value.limit) == (5, 4)
    with pytest.raises(ValueTooLargeError):
        await store.append_at_end(run_id, "s", 3, b"abcdefgh")
    assert await store.state(run_id, "s") == StreamState(2)


# ------------------------------------------------------ one process, one object
async def test_deleting_a_run_wakes_its_blocked_readers(run_id: str) -> None:
    store = MemoryStore()
    await store.append(run_id, "s", 0, 1, b"x")
    with anyio.fail_after(10):  # woken, not timed out
        async with anyio.create_task_group() as tg:

            async def reader() -> None:
                batch = await store.read(run_id, "s", 1, timeout=60)
                assert batch.chunks == ()

            tg.start_soon(reader)
            await wait_all_tasks_blocked()
            await store.delete_run(run_id)
    assert await store.list_runs() == []


async def test_two_memory_stores_share_nothing(run_id: str) -> None:
    first, second = MemoryStore(), MemoryStore()
    await first.append(run_id, "s", 0, 1, b"x")
    assert await second.state(run_id, "s") == StreamState(0)
    assert await second.list_runs() == []


async def test_closing_keeps_the_data_of_the_object() -> None:
    # Its data lives in the object: closing releases nothing (there are no
    # connections), so a store object shared by a test fixture goes on working.
    store = MemoryStore()
    async with store:
        await store.set_fields("r", {"k": b"v"})
    assert await store.get_fields("r") == {"k": b"v"}
