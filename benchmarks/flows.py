"""The Datagraph side of the workloads: W3 and its variants, each timed one way.

W3 is a 3-stage linear flow: ``source`` yields the ints 0..N-1, ``double`` yields
x*2, ``increment`` yields x+1, and the caller streams the final output and checks
its sum (N**2). Every processor is written the plain way (``async for x in
stream: yield f(x)``); batching is Datagraph's business.
"""

from __future__ import annotations

import collections
import time
from typing import TYPE_CHECKING, Any, NamedTuple

import anyio

from datagraph import IO, Flow, IOVal, MemoryStore, Processor, Settings, Supervisor

from ._common import MemorySampler, sum_check, url_port

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable

    from datagraph import Run

#: Key prefix of every Redis key the suite's runs write.
PREFIX = "dgbench"


def make_supervisor(redis_url: str | None) -> Supervisor:
    """A supervisor on a fresh memory store, or on Redis at ``redis_url``.

    Settings are the library's defaults, whatever ``DATAGRAPH_*`` says.
    """
    if redis_url is None:
        return Supervisor(store=MemoryStore(), settings=Settings())
    return Supervisor(settings=Settings(redis_url=redis_url, prefix=PREFIX))


# -------------------------------------------------------------------------- W3
source = Processor(name="w3_source", inputs=["n"], outputs=["numbers"])
double = Processor(name="w3_double", inputs=["numbers"], outputs=["doubled"])
increment = Processor(name="w3_increment", inputs=["doubled"], outputs=["out"])
# A reader of the final output that only counts (used where the run must retain
# nothing but small figures: Redis memory).
sink = Processor(name="w3_sink", inputs=["out"], outputs=["total"])


@source
async def _source(n: IO[int]) -> AsyncIterator[int]:
    for i in range(await n.first()):
        yield i


@double
async def _double(numbers: IO[int]) -> AsyncIterator[int]:
    async for x in numbers.stream():
        yield x * 2


@increment
async def _increment(doubled: IO[int]) -> AsyncIterator[int]:
    async for x in doubled.stream():
        yield x + 1


@sink
async def _sink(out: IO[int]) -> AsyncIterator[int]:
    total = 0
    async for x in out.stream():
        total += x
    yield total


W3 = Flow.from_processors(source, double, increment).resolve()
W3_SINK = Flow.from_processors(source, double, increment, sink).resolve()


class RunTimes(NamedTuple):
    """When a timed run reached each point, in seconds from before ``start_flow``."""

    started: float  # start_flow returned
    first: float  # the first final value was read
    end: float  # the last one was read and ``run.wait()`` returned


async def timed_run(
    supervisor: Supervisor,
    flow: Flow,
    given: IOVal[Any],
    output: str,
    expected: int,
    what: str,
    *,
    each: Callable[[Any], int] | None = None,
    watch: float | None = None,
) -> RunTimes:
    """Run ``flow`` once, streaming ``output`` to its end; return when it got where.

    The values of ``output`` (or ``each(value)`` of each) must sum to ``expected``,
    or the run fails, naming ``what``. With ``watch``, a watcher takes a snapshot
    of the run every ``watch`` seconds meanwhile, as ``datagraph watch`` does. The
    run's keys are deleted afterwards.
    """
    start = time.perf_counter()
    run = await supervisor.start_flow(flow, inputs=[given])
    started = time.perf_counter()
    async with anyio.create_task_group() as tg:
        if watch is not None:
            tg.start_soon(_watch, run, watch)
        values = run[output].stream()
        # Without ``each``, a plain loop: a call per value would show in W3's rate.
        if each is None:
            total = await anext(values)
            first = time.perf_counter()
            async for value in values:
                total += value
        else:
            total = each(await anext(values))
            first = time.perf_counter()
            async for value in values:
                total += each(value)
        await run.wait()
        tg.cancel_scope.cancel()
    end = time.perf_counter()
    await supervisor.store.delete_run(run.id)
    sum_check(total, expected, what)
    return RunTimes(started - start, first - start, end - start)


async def _watch(run: Run, interval: float) -> None:
    while True:
        snapshot = await run.snapshot()
        assert snapshot.streams
        await anyio.sleep(interval)


async def w3_once(
    supervisor: Supervisor, n: int, *, watch: float | None = None
) -> tuple[float, float]:
    """Run W3 once; return (seconds to the last value, seconds to the first one).

    The clock starts before ``start_flow``; the first value's time is counted
    from when ``start_flow`` returned. ``watch``: see ``timed_run``.
    """
    times = await timed_run(
        supervisor, W3, IOVal("n", n), "out", n * n, f"W3 N={n}", watch=watch
    )
    return times.end, times.first - times.started


async def w3_times(
    redis_url: str | None,
    n: int,
    runs: int,
    *,
    first: bool = False,
    watch: float | None = None,
) -> list[float]:
    """Time ``runs`` runs of W3 (after a warm-up run) on one store.

    Returns the total seconds of each run, or with ``first`` the seconds to the
    first final value. ``watch``: see ``timed_run``.
    """
    async with make_supervisor(redis_url) as supervisor:
        await w3_once(supervisor, min(n, 1000))  # connect, build call models
        results = [await w3_once(supervisor, n, watch=watch) for _ in range(runs)]
    return [r[1] if first else r[0] for r in results]


async def w3_redis_memory(redis_url: str, n: int) -> tuple[int, float]:
    """Run W3 with a counting sink on Redis, sampling the server's used_memory.

    Returns the peak of used_memory above its level before the run (bytes) and
    the run's seconds. The final output is read by the sink, so what the run
    keeps at its end is a single value (the total) and its metadata.
    """
    async with make_supervisor(redis_url) as supervisor:
        run = await supervisor.start_flow(W3_SINK, inputs=[IOVal("n", 100)])
        await run.wait()  # warm up: scripts loaded, connections open
        await supervisor.store.delete_run(run.id)
        with MemorySampler(url_port(redis_url)) as sampler:
            start = time.perf_counter()
            run = await supervisor.start_flow(W3_SINK, inputs=[IOVal("n", n)])
            total = await run["total"].first()
            await run.wait()
            elapsed = time.perf_counter() - start
        await supervisor.store.delete_run(run.id)
    sum_check(total, n * n, f"W3 with sink N={n}")
    return sampler.peak - sampler.before, elapsed


# --------------------------------------------------------------------- latency
lat_source = Processor(name="lat_source", inputs=["lat_n"], outputs=["lat_a"])
lat_double = Processor(name="lat_double", inputs=["lat_a"], outputs=["lat_b"])
lat_increment = Processor(name="lat_increment", inputs=["lat_b"], outputs=["lat_out"])


@lat_source
async def _lat_source(lat_n: IO[list[float]]) -> AsyncIterator[list[float]]:
    count, rate = await lat_n.first()
    start = time.perf_counter()
    for i in range(int(count)):
        delay = start + i / rate - time.perf_counter()
        if delay > 0:
            await anyio.sleep(delay)
        yield [i, time.perf_counter()]


@lat_double
async def _lat_double(lat_a: IO[list[float]]) -> AsyncIterator[list[float]]:
    async for x, stamp in lat_a.stream():
        yield [x * 2, stamp]


@lat_increment
async def _lat_increment(lat_b: IO[list[float]]) -> AsyncIterator[list[float]]:
    async for x, stamp in lat_b.stream():
        yield [x + 1, stamp]


LATENCY = Flow.from_processors(lat_source, lat_double, lat_increment).resolve()


async def latency_run(
    redis_url: str | None, count: int, rate: float, warmup: int
) -> list[float]:
    """Run the paced W3 once; return each value's end-to-end latency (seconds).

    The source stamps each value with ``perf_counter()`` when it yields it, the
    stamp travels with the value, and the caller subtracts it from the time it
    reads the final value. The first ``warmup`` values (processors starting) are
    left out.
    """
    latencies: list[float] = []
    async with make_supervisor(redis_url) as supervisor:
        warm = await supervisor.start_flow(LATENCY, inputs=[IOVal("lat_n", [10, 1e4])])
        await warm["lat_out"].collect()
        await supervisor.store.delete_run(warm.id)
        run = await supervisor.start_flow(
            LATENCY, inputs=[IOVal("lat_n", [count, rate])]
        )
        async for x, stamp in run["lat_out"].stream():
            latencies.append(time.perf_counter() - stamp)
            if int(x) != len(latencies) * 2 - 1:
                msg = f"latency run: value {x} came out of order"
                raise AssertionError(msg)
        await run.wait()
        await supervisor.store.delete_run(run.id)
    if len(latencies) != count:
        msg = f"latency run: {len(latencies)} values out of {count}"
        raise AssertionError(msg)
    return latencies[warmup:]


# ------------------------------------------------------------------- scale-out
SCALE_DELAY = 0.010  # seconds of (simulated) I/O per value
processed: collections.Counter[int] = collections.Counter()

so_source = Processor(name="so_bench_source", inputs=["so_n"], outputs=["so_items"])


def _make_worker(instances: int) -> Processor:
    worker = Processor(
        name=f"so_bench_worker_{instances}",
        inputs=["so_items"],
        outputs=["so_out"],
        instances=instances,
    )

    @worker
    async def _work(so_items: IO[int]) -> AsyncIterator[int]:
        async for item in so_items.stream():
            processed[item] += 1
            await anyio.sleep(SCALE_DELAY)
            yield item

    return worker


@so_source
async def _so_source(so_n: IO[int]) -> AsyncIterator[int]:
    for i in range(await so_n.first()):
        yield i


SCALE_FLOWS = {
    count: Flow.from_processors(so_source, _make_worker(count)).resolve()
    for count in (1, 8)
}


async def scale_out_times(
    redis_url: str | None, instances: int, n: int, runs: int
) -> list[float]:
    """Time runs of source -> (stage awaiting 10 ms per value) x ``instances``.

    Every run checks that each value was processed exactly once and came out
    once.
    """
    flow = SCALE_FLOWS[instances]
    times = []
    async with make_supervisor(redis_url) as supervisor:
        for attempt in range(runs + 1):  # the first is a short warm-up
            count = min(n, 16) if attempt == 0 else n
            processed.clear()
            start = time.perf_counter()
            run = await supervisor.start_flow(flow, inputs=[IOVal("so_n", count)])
            out = await run["so_out"].collect()
            await run.wait()
            elapsed = time.perf_counter() - start
            await supervisor.store.delete_run(run.id)
            check_exactly_once(out, count)
            if attempt:
                times.append(elapsed)
    return times


def check_exactly_once(out: list[Any], n: int) -> None:
    """Fail unless every value 0..n-1 was processed once and written once."""
    if sorted(out) != list(range(n)):
        msg = f"scale-out: the output is not each of the {n} values once"
        raise AssertionError(msg)
    twice = [v for v, times in processed.items() if times != 1]
    if twice or len(processed) != n:
        msg = f"scale-out: values processed more than once: {twice[:10]}"
        raise AssertionError(msg)
