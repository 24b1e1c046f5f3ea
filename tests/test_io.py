"""Reading streams: ``IO.stream/first/collect/stream_with/as_available/is_complete``.

Producers here are held at chosen points with ``anyio.Event``s, so each test proves
what a reader sees *while* a stream is still open, not only after it ended.
"""

from collections.abc import AsyncIterator
from contextlib import aclosing
from typing import Any

import anyio
import pytest

from datagraph import (
    IO,
    DatagraphError,
    EmptyStreamError,
    Flow,
    IOVal,
    Processor,
    Supervisor,
    UpstreamError,
)
from helpers import start

pytestmark = pytest.mark.anyio

TIMEOUT = 10


async def test_stream_yields_values_as_they_are_written(supervisor: Supervisor) -> None:
    proc = Processor(name="io_stream_live", outputs=["out"])
    release = anyio.Event()

    @proc
    async def impl() -> AsyncIterator[int]:
        yield 1
        yield 2
        await release.wait()
        yield 3

    with anyio.fail_after(TIMEOUT):
        run = await start(supervisor, proc)
        seen: list[int] = []
        async for value in run["out"].stream():
            seen.append(value)
            if len(seen) == 2:
                # The first values arrived while the producer is still running.
                assert not await run["out"].is_complete()
                release.set()
        assert seen == [1, 2, 3]
        await run.wait()


async def test_io_is_async_iterable(supervisor: Supervisor) -> None:
    proc = Processor(name="io_aiter", outputs=["out"])

    @proc
    async def impl() -> AsyncIterator[str]:
        for letter in "abc":
            yield letter

    with anyio.fail_after(TIMEOUT):
        run = await start(supervisor, proc)
        assert [v async for v in run["out"]] == ["a", "b", "c"]
        await run.wait()


async def test_collect_returns_every_value_in_order(supervisor: Supervisor) -> None:
    proc = Processor(name="io_collect", outputs=["out"])
    count = 5000

    @proc
    async def impl() -> AsyncIterator[int]:
        for i in range(count):
            yield i

    with anyio.fail_after(TIMEOUT):
        run = await start(supervisor, proc)
        assert await run["out"].collect() == list(range(count))
        # A second call reads the stream from its start again.
        assert await run["out"].collect() == list(range(count))
        await run.wait()


async def test_bare_values_go_to_the_single_output(supervisor: Supervisor) -> None:
    proc = Processor(name="io_bare", inputs=["x"], outputs=["only"])

    @proc
    async def impl(x: IO[int]) -> AsyncIterator[Any]:
        async for v in x.stream():
            yield v * 10
            yield IOVal("only", v * 10 + 1)

    with anyio.fail_after(TIMEOUT):
        run = await start(supervisor, proc, inputs=[IOVal("x", 1), IOVal("x", 2)])
        assert await run["only"].collect() == [10, 11, 20, 21]
        await run.wait()


async def test_many_readers_each_see_every_value_in_order(
    supervisor: Supervisor,
) -> None:
    source = Processor(name="io_many_source", outputs=["numbers"])
    doubler = Processor(name="io_many_double", inputs=["numbers"], outputs=["doubled"])
    summer = Processor(name="io_many_sum", inputs=["numbers"], outputs=["total"])
    count = 2000
    readers = 4
    all_reading = anyio.Event()

    @source
    async def produce() -> AsyncIterator[int]:
        await all_reading.wait()
        for i in range(count):
            yield i
            if i % 100 == 0:
                await anyio.lowlevel.checkpoint()

    @doubler
    async def double(numbers: IO[int]) -> AsyncIterator[int]:
        async for n in numbers.stream():
            yield 2 * n

    @summer
    async def total(numbers: IO[int]) -> IOVal[int]:
        return IOVal("total", sum(await numbers.collect()))

    with anyio.fail_after(TIMEOUT):
        run = await start(supervisor, source, doubler, summer)
        assert set(run) == {"doubled", "total"}
        results: list[list[int]] = []
        started = 0

        async def read(io: IO[int]) -> None:
            nonlocal started
            started += 1
            if started == readers:
                all_reading.set()
            results.append([v async for v in io.stream()])

        async with anyio.create_task_group() as tg:
            for _ in range(readers):
                tg.start_soon(read, run["doubled"])
        assert results == [[2 * i for i in range(count)]] * readers
        assert await run["total"].first() == sum(range(count))
        await run.wait()


async def test_readers_see_every_value_of_an_intermediate_stream(
    supervisor: Supervisor,
) -> None:
    source = Processor(name="io_inner_source", outputs=["inner"])
    sink = Processor(name="io_inner_sink", inputs=["inner"], outputs=["out"])

    @source
    async def produce() -> AsyncIterator[int]:
        for i in range(100):
            yield i

    @sink
    async def consume(inner: IO[int]) -> AsyncIterator[int]:
        async for v in inner.stream():
            yield v + 1

    with anyio.fail_after(TIMEOUT):
        flow = Flow.from_processors(source, sink).resolve()
        run = await supervisor.start_flow(flow, all_outputs=True)
        assert set(run) == {"inner", "out"}
        inner, out = await run["inner"].collect(), await run["out"].collect()
        assert inner == list(range(100))
        assert out == list(range(1, 101))
        await run.wait()


async def test_first_returns_while_the_stream_is_still_open(
    supervisor: Supervisor,
) -> None:
    proc = Processor(name="io_first_open", outputs=["out"])
    release = anyio.Event()

    @proc
    async def impl() -> AsyncIterator[int]:
        yield 42
        yield 43
        await release.wait()

    with anyio.fail_after(TIMEOUT):
        run = await start(supervisor, proc)
        assert await run["out"].first() == 42
        assert not await run["out"].is_complete()
        release.set()
        await run.wait()
        assert await run["out"].first() == 42


async def test_first_of_an_empty_stream(supervisor: Supervisor) -> None:
    proc = Processor(name="io_first_empty", inputs=["x"], outputs=["out"])

    @proc
    async def impl(x: IO[int]) -> None:
        await x.collect()

    with anyio.fail_after(TIMEOUT):
        run = await start(supervisor, proc, inputs=[IOVal("x", 1)])
        await run.wait()
        assert await run["out"].first(None) is None
        assert await run["out"].first("fallback") == "fallback"
        with pytest.raises(EmptyStreamError) as excinfo:
            await run["out"].first()
        assert "'out'" in str(excinfo.value)
        assert isinstance(excinfo.value, LookupError)
        assert isinstance(excinfo.value, DatagraphError)
        assert await run["out"].collect() == []


async def test_first_of_a_failed_stream_raises_the_failure(
    supervisor: Supervisor,
) -> None:
    proc = Processor(name="io_first_failed", outputs=["out"])

    @proc
    async def impl() -> AsyncIterator[int]:
        if proc.name:  # always true; keeps this an async generator
            msg = "nothing to give"
            raise ValueError(msg)
        yield 0

    with anyio.fail_after(TIMEOUT):
        run = await start(supervisor, proc)
        with pytest.raises(UpstreamError) as excinfo:
            await run["out"].first("default is only for a clean end")
        assert excinfo.value.processor == "io_first_failed"


async def test_is_complete(supervisor: Supervisor) -> None:
    proc = Processor(name="io_is_complete", outputs=["out"])
    release = anyio.Event()

    @proc
    async def impl() -> AsyncIterator[int]:
        yield 1
        await release.wait()

    with anyio.fail_after(TIMEOUT):
        run = await start(supervisor, proc)
        assert await run["out"].first() == 1
        assert not await run["out"].is_complete()
        release.set()
        await run.wait()
        assert await run["out"].is_complete()


def _zip_processors(prefix: str) -> tuple[Processor, Processor]:
    letters = Processor(name=f"{prefix}_letters", outputs=["letters"])
    numbers = Processor(name=f"{prefix}_numbers", outputs=["numbers"])

    @letters
    async def produce_letters() -> AsyncIterator[str]:
        for letter in "abcde":
            yield letter

    @numbers
    async def produce_numbers() -> AsyncIterator[int]:
        for n in range(3):
            yield n

    return letters, numbers


async def test_stream_with_zips_to_the_shortest(supervisor: Supervisor) -> None:
    letters, numbers = _zip_processors("io_zip")

    with anyio.fail_after(TIMEOUT):
        run = await start(supervisor, letters, numbers)
        rows = [row async for row in run["letters"].stream_with(run["numbers"])]
        assert rows == [("a", 0), ("b", 1), ("c", 2)]
        await run.wait()


async def test_stream_with_pads_to_the_longest(supervisor: Supervisor) -> None:
    letters, numbers = _zip_processors("io_zip_pad")

    with anyio.fail_after(TIMEOUT):
        run = await start(supervisor, letters, numbers)
        rows = [
            row async for row in run["numbers"].stream_with(run["letters"], pad=True)
        ]
        assert rows == [(0, "a"), (1, "b"), (2, "c"), (None, "d"), (None, "e")]
        padded = [
            row
            async for row in run["numbers"].stream_with(
                run["letters"], pad=True, fillvalue=-1
            )
        ]
        assert padded[3:] == [(-1, "d"), (-1, "e")]
        await run.wait()


async def test_stream_with_inside_a_processor(supervisor: Supervisor) -> None:
    letters, numbers = _zip_processors("io_zip_proc")
    pair = Processor(
        name="io_zip_proc_pair", inputs=["letters", "numbers"], outputs=["pairs"]
    )

    @pair
    async def impl(letters: IO[str], numbers: IO[int]) -> AsyncIterator[str]:
        async for letter, number in letters.stream_with(numbers):
            yield f"{letter}{number}"

    with anyio.fail_after(TIMEOUT):
        run = await start(supervisor, letters, numbers, pair)
        assert await run["pairs"].collect() == ["a0", "b1", "c2"]
        await run.wait()


async def test_as_available_merges_streams_as_values_arrive(
    supervisor: Supervisor,
) -> None:
    slow = Processor(name="io_merge_slow", outputs=["slow"])
    fast = Processor(name="io_merge_fast", outputs=["fast"])
    fast_seen = anyio.Event()

    @slow
    async def produce_slow() -> AsyncIterator[int]:
        yield 1
        # Held open until the merge has delivered a value of the other stream:
        # a merge that read the streams one after the other would never get there.
        await fast_seen.wait()
        yield 2

    @fast
    async def produce_fast() -> AsyncIterator[str]:
        yield "a"
        yield "b"

    with anyio.fail_after(TIMEOUT):
        run = await start(supervisor, slow, fast)
        merged: list[IOVal[Any]] = []
        async for item in run["slow"].as_available(run["fast"]):
            merged.append(item)
            if item.name == "fast":
                fast_seen.set()
        assert [v.value for v in merged if v.name == "slow"] == [1, 2]
        assert [v.value for v in merged if v.name == "fast"] == ["a", "b"]
        assert len(merged) == 4
        # 2 can only come after a value of "fast" released it.
        assert merged.index(IOVal("slow", 2)) > merged.index(IOVal("fast", "a"))
        await run.wait()


async def test_as_available_raises_an_upstream_failure(supervisor: Supervisor) -> None:
    good = Processor(name="io_merge_good", outputs=["good"])
    bad = Processor(name="io_merge_bad", outputs=["bad"])

    @good
    async def produce_good() -> AsyncIterator[int]:
        yield 1

    @bad
    async def produce_bad() -> AsyncIterator[int]:
        yield 1
        msg = "merge input broke"
        raise RuntimeError(msg)

    with anyio.fail_after(TIMEOUT):
        run = await start(supervisor, good, bad)
        with pytest.raises(UpstreamError) as excinfo:
            async for _ in run["good"].as_available(run["bad"]):
                pass
        assert excinfo.value.processor == "io_merge_bad"
        assert excinfo.value.message == "merge input broke"


async def test_leaving_as_available_early(supervisor: Supervisor) -> None:
    a = Processor(name="io_merge_early_a", outputs=["a"])
    b = Processor(name="io_merge_early_b", outputs=["b"])
    release = anyio.Event()

    @a
    async def produce_a() -> AsyncIterator[int]:
        yield 1
        await release.wait()

    @b
    async def produce_b() -> AsyncIterator[int]:
        await release.wait()
        yield 2

    with anyio.fail_after(TIMEOUT):
        run = await start(supervisor, a, b)
        async with aclosing(run["a"].as_available(run["b"])) as merged:
            async for item in merged:
                assert item == IOVal("a", 1)
                break
        release.set()
        await run.wait()
        assert await run["b"].collect() == [2]
