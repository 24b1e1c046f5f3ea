"""``IO.stream_with`` (zip), which pairs values a stored batch at a time.

The streams here are stored in batches of different sizes and arrive at
different moments (held by ``anyio.Event``s), so rows are built across batch
boundaries that do not line up.
"""

from collections.abc import AsyncIterator
from contextlib import aclosing
from typing import Any

import anyio
import anyio.lowlevel
import pytest

from datagraph import (
    IO,
    IOVal,
    LocalExecutor,
    Processor,
    Settings,
    Store,
    Supervisor,
    UpstreamError,
)
from helpers import start

pytestmark = pytest.mark.anyio

TIMEOUT = 10


def _supervisor(store: Store, batch_size: int) -> Supervisor:
    return Supervisor(
        store=store, executor=LocalExecutor(), settings=Settings(batch_size=batch_size)
    )


def _counter(name: str, stream: str, count: int, start_at: int = 0) -> Processor:
    proc = Processor(name=name, outputs=[stream])

    @proc
    async def produce() -> AsyncIterator[int]:
        for i in range(start_at, start_at + count):
            yield i

    return proc


async def test_rows_pair_values_across_batches_that_do_not_line_up(
    store: Store,
) -> None:
    # Batches of 5 (and smaller ones at the start) against one value per batch.
    supervisor = _supervisor(store, batch_size=5)
    many = _counter("zp_lines_many", "zp_many", 23)
    few = Processor(name="zp_lines_few", outputs=["zp_few"])
    join = Processor(name="zp_lines_join", inputs=["zp_many", "zp_few"],
                     outputs=["zp_rows"])  # fmt: skip

    @few
    async def one_at_a_time() -> AsyncIterator[str]:
        for i in range(20):
            yield f"v{i}"
            await anyio.lowlevel.checkpoint()  # flushed alone

    @join
    async def pair(zp_many: IO[int], zp_few: IO[str]) -> AsyncIterator[list[Any]]:
        async for number, text in zp_many.stream_with(zp_few):
            yield [number, text]

    with anyio.fail_after(TIMEOUT):
        run = await start(supervisor, many, few, join, all_outputs=True)
        rows = await run["zp_rows"].collect()
        await run.wait()
        chunks = [len(c) async for c in run["zp_few"].chunks()]
    assert rows == [[i, f"v{i}"] for i in range(20)]
    assert len(chunks) > 1  # the batches really differ


async def test_three_streams_zip_to_the_shortest(store: Store) -> None:
    supervisor = _supervisor(store, batch_size=4)
    procs = [
        _counter("zp_three_a", "zp_a", 11),
        _counter("zp_three_b", "zp_b", 7, start_at=100),
        _counter("zp_three_c", "zp_c", 30, start_at=1000),
    ]

    with anyio.fail_after(TIMEOUT):
        run = await start(supervisor, *procs)
        rows = [r async for r in run["zp_a"].stream_with(run["zp_b"], run["zp_c"])]
        await run.wait()
    assert rows == [(i, 100 + i, 1000 + i) for i in range(7)]


async def test_pad_goes_on_to_the_longest_with_the_fillvalue(store: Store) -> None:
    supervisor = _supervisor(store, batch_size=3)
    short = _counter("zp_pad_short", "zp_short", 4)
    long = _counter("zp_pad_long", "zp_long", 10, start_at=50)

    with anyio.fail_after(TIMEOUT):
        run = await start(supervisor, short, long)
        padded = [
            row
            async for row in run["zp_short"].stream_with(
                run["zp_long"], pad=True, fillvalue="-"
            )
        ]
        await run.wait()
    assert padded == [(i, 50 + i) for i in range(4)] + [
        ("-", 50 + i) for i in range(4, 10)
    ]


async def test_an_empty_stream_gives_no_rows_unless_padded(store: Store) -> None:
    supervisor = _supervisor(store, batch_size=3)
    empty = _counter("zp_empty", "zp_none", 0)
    some = _counter("zp_empty_some", "zp_some", 2)

    with anyio.fail_after(TIMEOUT):
        run = await start(supervisor, empty, some)
        assert [r async for r in run["zp_none"].stream_with(run["zp_some"])] == []
        padded = [r async for r in run["zp_none"].stream_with(run["zp_some"], pad=True)]
        await run.wait()
    assert padded == [(None, 0), (None, 1)]


async def test_rows_come_as_soon_as_every_stream_has_a_value(store: Store) -> None:
    supervisor = _supervisor(store, batch_size=100)
    a = Processor(name="zp_live_a", outputs=["zp_la"])
    b = Processor(name="zp_live_b", outputs=["zp_lb"])
    release = anyio.Event()

    @a
    async def produce_a() -> AsyncIterator[int]:
        for i in range(3):
            yield i
        await release.wait()
        yield 3

    @b
    async def produce_b() -> AsyncIterator[int]:
        for i in range(4):
            yield i * 10

    with anyio.fail_after(TIMEOUT):
        run = await start(supervisor, a, b)
        async with aclosing(run["zp_la"].stream_with(run["zp_lb"])) as rows:
            # Three rows while stream a is still open and b has a fourth value.
            assert [await anext(rows) for _ in range(3)] == [(0, 0), (1, 10), (2, 20)]
            release.set()
            assert [row async for row in rows] == [(3, 30)]
        await run.wait()


async def test_a_failed_stream_raises_after_the_rows_before_the_failure(
    store: Store,
) -> None:
    supervisor = _supervisor(store, batch_size=2)
    good = _counter("zp_fail_good", "zp_good", 10)
    bad = Processor(name="zp_fail_bad", outputs=["zp_bad"])

    @bad
    async def produce() -> AsyncIterator[int]:
        for i in range(3):
            yield i
        raise ValueError("broken source")

    rows: list[tuple[Any, ...]] = []

    async def read_rows(run: Any) -> UpstreamError:
        try:
            async for row in run["zp_good"].stream_with(run["zp_bad"]):
                rows.append(row)  # noqa: PERF401 - keep the rows read before it
        except UpstreamError as exc:
            return exc
        pytest.fail(f"zip ended without an UpstreamError: {rows!r}")

    with anyio.fail_after(TIMEOUT):
        run = await start(supervisor, good, bad)
        error = await read_rows(run)
    assert rows == [(0, 0), (1, 1), (2, 2)]
    assert error.processor == "zp_fail_bad"
    assert error.error_type == "ValueError"


async def test_zip_inside_a_processor_with_ioval_outputs(store: Store) -> None:
    supervisor = _supervisor(store, batch_size=8)
    a = _counter("zp_proc_a", "zp_pa", 100)
    b = _counter("zp_proc_b", "zp_pb", 100, start_at=1)
    join = Processor(name="zp_proc_join", inputs=["zp_pa", "zp_pb"],
                     outputs=["zp_sums", "zp_products"])  # fmt: skip

    @join
    async def combine(zp_pa: IO[int], zp_pb: IO[int]) -> AsyncIterator[IOVal[int]]:
        async for x, y in zp_pa.stream_with(zp_pb):
            yield IOVal(name="zp_sums", value=x + y)
            yield IOVal("zp_products", x * y)

    with anyio.fail_after(TIMEOUT):
        run = await start(supervisor, a, b, join)
        assert await run["zp_sums"].collect() == [2 * i + 1 for i in range(100)]
        assert await run["zp_products"].collect() == [i * (i + 1) for i in range(100)]
        await run.wait()
