"""A value reaches its readers while the producer is idle: no batch, timer or later
write has to push it along. Each test waits on events only; ``fail_after`` merely
keeps a broken build from hanging the suite.
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Annotated

import anyio
import pytest
from anyio import wait_all_tasks_blocked

from datagraph import IO, Depends, Flow, IOVal, LocalExecutor, Processor, Supervisor
from datagraph.stores import Batch, Chunk

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable

    from datagraph import Store

pytestmark = pytest.mark.anyio

TIMEOUT = 20  # a hang guard only


def get_release() -> anyio.Event:
    """The event the source waits on after its value (each test gives its own)."""
    raise NotImplementedError("each test overrides get_release")


idle_source = Processor(name="idle_source", inputs=["idle_n"], outputs=["idle_a"])
idle_middle = Processor(name="idle_middle", inputs=["idle_a"], outputs=["idle_b"])
idle_last = Processor(name="idle_last", inputs=["idle_b"], outputs=["idle_c"])


@idle_source
async def _idle_source(
    idle_n: IO[int], release: Annotated[anyio.Event, Depends(get_release)]
) -> AsyncIterator[int]:
    yield await idle_n.first()
    await release.wait()  # idle until the caller has the value


@idle_middle
async def _idle_middle(idle_a: IO[int]) -> AsyncIterator[int]:
    async for value in idle_a.stream():
        yield value + 1


@idle_last
async def _idle_last(idle_b: IO[int]) -> AsyncIterator[int]:
    async for value in idle_b.stream():
        yield value * 10


IDLE_FLOW = Flow.from_processors(idle_source, idle_middle, idle_last).resolve()


@pytest.fixture
def run_id() -> str:
    return uuid.uuid4().hex


async def test_an_idle_producers_value_crosses_every_stage(store: Store) -> None:
    # Batches far larger than one value and a flush interval that never expires:
    # only flushing on idle, and waking each reader at once, deliver the value.
    supervisor = Supervisor(
        store=store, executor=LocalExecutor(), batch_size=1000, flush_interval=3600
    )
    release = anyio.Event()
    try:
        with (
            supervisor.override(get_release, lambda: release),
            anyio.fail_after(TIMEOUT),
        ):
            run = await supervisor.start_flow(IDLE_FLOW, inputs=[IOVal("idle_n", 4)])
            got = []
            async for value in run["idle_c"].stream():
                got.append(value)
                release.set()  # the source was idle until now
            await run.wait()
    finally:
        release.set()
    assert got == [50]


async def test_another_store_object_reads_an_idle_producers_value(
    store_factory: Callable[[], Store], store: Store
) -> None:
    # As from another process: woken through the store, not inside this object.
    supervisor = Supervisor(
        store=store, executor=LocalExecutor(), batch_size=1000, flush_interval=3600
    )
    release = anyio.Event()
    reader = store_factory()
    try:
        with (
            supervisor.override(get_release, lambda: release),
            anyio.fail_after(TIMEOUT),
        ):
            run = await supervisor.start_flow(IDLE_FLOW, inputs=[IOVal("idle_n", 1)])
            batch = await reader.read(run.id, "idle_c", 0, timeout=TIMEOUT)
            release.set()
            await run.wait()
    finally:
        release.set()
        if reader is not store:
            await reader.aclose()
    assert [c.start for c in batch.chunks] == [0]


async def test_a_reader_is_only_handed_the_values_from_its_position(
    store: Store, run_id: str
) -> None:
    # A reader asking beyond the end must not get the batch that fills the gap
    # before its position (written through the same store object), only the next.
    await store.append(run_id, "s", 0, 2, b"ab")
    got: list[Batch] = []

    async def reader() -> None:
        got.append(await store.read(run_id, "s", 3, timeout=TIMEOUT, reader="r"))

    with anyio.fail_after(TIMEOUT):
        async with anyio.create_task_group() as tg:
            tg.start_soon(reader)
            await wait_all_tasks_blocked()
            await store.append(run_id, "s", 2, 1, b"c")
            await wait_all_tasks_blocked()
            assert got == []
            await store.append(run_id, "s", 3, 2, b"de")
    assert [c for c in got[0].chunks if c.stop > 3] == [Chunk(3, 2, b"de")]
    # At the read's position, or past the batch a store handed to it directly.
    assert await store.cursors(run_id, "s") in ({"r": 3}, {"r": 5})


@pytest.mark.redis
async def test_waiting_for_a_run_that_does_not_exist_yet_does_not_index_it(
    redis_url: str, redis_prefix: str
) -> None:
    # The registration of the waiting reader is no key of the run.
    from datagraph.stores.redis import RedisStore

    run_id = uuid.uuid4().hex
    async with RedisStore(redis_url, prefix=redis_prefix) as store:
        with anyio.fail_after(TIMEOUT):
            async with anyio.create_task_group() as tg:
                tg.start_soon(lambda: store.read(run_id, "s", 0, timeout=TIMEOUT))
                await wait_all_tasks_blocked()
                assert await store.list_runs() == []
                tg.cancel_scope.cancel()


@pytest.mark.redis
async def test_local_writes_wake_local_readers_without_the_server(
    redis_url: str, redis_prefix: str
) -> None:
    # A reader woken by a write of its own process gets nothing through its wake
    # stream: no per-value traffic. A write from elsewhere does go through it.
    from datagraph.stores.redis import RedisStore

    async with (
        RedisStore(redis_url, prefix=redis_prefix) as store,
        RedisStore(redis_url, prefix=redis_prefix) as other,
    ):
        got: list[Batch] = []

        async def reader(position: int) -> None:
            got.append(await store.read("run", "s", position, timeout=TIMEOUT))

        session, client = await store._client("inspect")
        watchers = f"{redis_prefix}:{{run}}:w:s"
        try:
            with anyio.fail_after(TIMEOUT):
                async with anyio.create_task_group() as tg:
                    tg.start_soon(reader, 0)
                    await wait_all_tasks_blocked()
                    await store.append("run", "s", 0, 1, b"a")
                assert await client.exists([session.wake_key]) == 0
                async with anyio.create_task_group() as tg:
                    tg.start_soon(reader, 1)
                    await wait_all_tasks_blocked()
                    # Sent after the reader's script on the same connection, so it
                    # runs after it: the reader has registered its wake stream.
                    assert await client.hexists(watchers, session.wake_key)
                    await other.append("run", "s", 1, 1, b"b")
                assert await client.xlen(session.wake_key) == 1
            assert [[(c.start, c.data) for c in b.chunks] for b in got] == [
                [(0, b"a")],
                [(1, b"b")],
            ]
        finally:
            await store.delete_run("run")
            await client.delete([session.wake_key, watchers])
