"""W3 written in each style users write processors in, and the zip and merge stages.

Every workload here is measured against the bare-value W3 of ``flows`` in the same
run (``rows/styles.py``, group ``styles``):

- ``bare``: async generators yielding bare values (``flows.W3``, the reference);
- ``ioval``: the seed's style, ``yield IOVal(name=..., value=...)``;
- ``sync_gen``: plain sync generators reading ``BlockingIO.stream()`` (worker thread);
- ``sync_fn``: plain sync functions returning a list of ``IOVal``s (worker thread);
- ``zip``: two sources of N values joined by ``a.stream_with(b)``: N output values;
- ``merge``: two sources of N/2 values merged by ``a.as_available(b)``: N values;
- ``chunks``: bare-value W3 whose stages read with ``chunks()`` (a batch per step);
- ``lists``: W3 over lists of 1,000 ints, each list one value of the streams.

Each run streams the final output and checks its sum, so a lost, duplicated or
mangled value fails the run.
"""

from __future__ import annotations

import contextlib
import functools
import json
import sys
import time
from contextlib import aclosing
from typing import TYPE_CHECKING, Any

from datagraph import IO, BlockingIO, Flow, IOVal, Processor, RunFailedError

from .flows import W3, make_supervisor, timed_run

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable, Iterator

    from datagraph import Supervisor

# ----------------------------------------------------------- the seed's style
iv_source = Processor(name="iv_source", inputs=["iv_n"], outputs=["iv_numbers"])
iv_double = Processor(name="iv_double", inputs=["iv_numbers"], outputs=["iv_doubled"])
iv_increment = Processor(name="iv_increment", inputs=["iv_doubled"], outputs=["iv_out"])


@iv_source
async def _iv_source(iv_n: IO[int]) -> AsyncIterator[IOVal[int]]:
    for i in range(await iv_n.first()):
        yield IOVal(name="iv_numbers", value=i)


@iv_double
async def _iv_double(iv_numbers: IO[int]) -> AsyncIterator[IOVal[int]]:
    async for x in iv_numbers.stream():
        yield IOVal(name="iv_doubled", value=x * 2)


@iv_increment
async def _iv_increment(iv_doubled: IO[int]) -> AsyncIterator[IOVal[int]]:
    async for x in iv_doubled.stream():
        yield IOVal(name="iv_out", value=x + 1)


W3_IOVAL = Flow.from_processors(iv_source, iv_double, iv_increment).resolve()

# ------------------------------------------------------------ sync generators
sg_source = Processor(name="sg_source", inputs=["sg_n"], outputs=["sg_numbers"])
sg_double = Processor(name="sg_double", inputs=["sg_numbers"], outputs=["sg_doubled"])
sg_increment = Processor(name="sg_increment", inputs=["sg_doubled"], outputs=["sg_out"])


@sg_source
def _sg_source(sg_n: BlockingIO[int]) -> Iterator[int]:
    yield from range(sg_n.first())


@sg_double
def _sg_double(sg_numbers: BlockingIO[int]) -> Iterator[int]:
    for x in sg_numbers.stream():
        yield x * 2


@sg_increment
def _sg_increment(sg_doubled: BlockingIO[int]) -> Iterator[int]:
    for x in sg_doubled.stream():
        yield x + 1


W3_SYNC_GEN = Flow.from_processors(sg_source, sg_double, sg_increment).resolve()

# ------------------------------------------------------------- sync functions
sf_source = Processor(name="sf_source", inputs=["sf_n"], outputs=["sf_numbers"])
sf_double = Processor(name="sf_double", inputs=["sf_numbers"], outputs=["sf_doubled"])
sf_increment = Processor(name="sf_increment", inputs=["sf_doubled"], outputs=["sf_out"])


@sf_source
def _sf_source(sf_n: BlockingIO[int]) -> list[IOVal[int]]:
    return [IOVal("sf_numbers", i) for i in range(sf_n.first())]


@sf_double
def _sf_double(sf_numbers: BlockingIO[int]) -> list[IOVal[int]]:
    return [IOVal("sf_doubled", x * 2) for x in sf_numbers.stream()]


@sf_increment
def _sf_increment(sf_doubled: BlockingIO[int]) -> list[IOVal[int]]:
    return [IOVal("sf_out", x + 1) for x in sf_doubled.stream()]


W3_SYNC_FN = Flow.from_processors(sf_source, sf_double, sf_increment).resolve()

# ------------------------------------------------------------------------ zip
zip_a = Processor(name="zip_source_a", inputs=["zip_n"], outputs=["zip_a"])
zip_b = Processor(name="zip_source_b", inputs=["zip_n"], outputs=["zip_b"])
zip_join = Processor(name="zip_join", inputs=["zip_a", "zip_b"], outputs=["zip_out"])


@zip_b
@zip_a
async def _zip_source(zip_n: IO[int]) -> AsyncIterator[int]:
    for i in range(await zip_n.first()):
        yield i


@zip_join
async def _zip_join(zip_a: IO[int], zip_b: IO[int]) -> AsyncIterator[int]:
    async for a, b in zip_a.stream_with(zip_b):
        yield a + b


ZIP = Flow.from_processors(zip_a, zip_b, zip_join).resolve()

# ---------------------------------------------------------------------- merge
merge_a = Processor(name="merge_source_a", inputs=["merge_n"], outputs=["merge_a"])
merge_b = Processor(name="merge_source_b", inputs=["merge_n"], outputs=["merge_b"])
merge = Processor(
    name="merge_join", inputs=["merge_a", "merge_b"], outputs=["merge_out"]
)


@merge_a
async def _merge_a(merge_n: IO[int]) -> AsyncIterator[int]:
    for i in range(await merge_n.first() // 2):
        yield i


@merge_b
async def _merge_b(merge_n: IO[int]) -> AsyncIterator[int]:
    n = await merge_n.first()
    for i in range(n // 2, n):
        yield i


@merge
async def _merge(merge_a: IO[int], merge_b: IO[int]) -> AsyncIterator[int]:
    async for item in merge_a.as_available(merge_b):
        yield item.value


MERGE = Flow.from_processors(merge_a, merge_b, merge).resolve()


# ------------------------------------------------- hot loops: chunks(), lists
ck_source = Processor(name="ck_source", inputs=["ck_n"], outputs=["ck_numbers"])
ck_double = Processor(name="ck_double", inputs=["ck_numbers"], outputs=["ck_doubled"])
ck_increment = Processor(name="ck_increment", inputs=["ck_doubled"], outputs=["ck_out"])


@ck_source
async def _ck_source(ck_n: IO[int]) -> AsyncIterator[int]:
    for i in range(await ck_n.first()):
        yield i


@ck_double
async def _ck_double(ck_numbers: IO[int]) -> AsyncIterator[int]:
    async for chunk in ck_numbers.chunks():
        for x in chunk:
            yield x * 2


@ck_increment
async def _ck_increment(ck_doubled: IO[int]) -> AsyncIterator[int]:
    async for chunk in ck_doubled.chunks():
        for x in chunk:
            yield x + 1


W3_CHUNKS = Flow.from_processors(ck_source, ck_double, ck_increment).resolve()

LIST_SIZE = 1000  # values per list in the ``lists`` style
ls_source = Processor(name="ls_source", inputs=["ls_n"], outputs=["ls_numbers"])
ls_double = Processor(name="ls_double", inputs=["ls_numbers"], outputs=["ls_doubled"])
ls_increment = Processor(name="ls_increment", inputs=["ls_doubled"], outputs=["ls_out"])


@ls_source
async def _ls_source(ls_n: IO[int]) -> AsyncIterator[list[int]]:
    n = await ls_n.first()
    for start in range(0, n, LIST_SIZE):
        yield list(range(start, min(n, start + LIST_SIZE)))


@ls_double
async def _ls_double(ls_numbers: IO[list[int]]) -> AsyncIterator[list[int]]:
    async for values in ls_numbers.stream():
        yield [x * 2 for x in values]


@ls_increment
async def _ls_increment(ls_doubled: IO[list[int]]) -> AsyncIterator[list[int]]:
    async for values in ls_doubled.stream():
        yield [x + 1 for x in values]


W3_LISTS = Flow.from_processors(ls_source, ls_double, ls_increment).resolve()


# --------------------------------------------------------------------- timing
def _n_squared(n: int) -> int:
    return n * n


def _zip_sum(n: int) -> int:
    return n * (n - 1)  # sum of 2i


def _merge_sum(n: int) -> int:
    return n * (n - 1) // 2  # sum of 0..n-1


#: style -> (flow, input stream, final output stream, expected sum of N values)
STYLES: dict[str, tuple[Flow, str, str, Callable[[int], int]]] = {
    "bare": (W3, "n", "out", _n_squared),
    "ioval": (W3_IOVAL, "iv_n", "iv_out", _n_squared),
    "sync_gen": (W3_SYNC_GEN, "sg_n", "sg_out", _n_squared),
    "sync_fn": (W3_SYNC_FN, "sf_n", "sf_out", _n_squared),
    "zip": (ZIP, "zip_n", "zip_out", _zip_sum),
    "merge": (MERGE, "merge_n", "merge_out", _merge_sum),
    "chunks": (W3_CHUNKS, "ck_n", "ck_out", _n_squared),
    "lists": (W3_LISTS, "ls_n", "ls_out", _n_squared),  # values are lists
}


async def style_once(supervisor: Supervisor, style: str, n: int) -> tuple[float, float]:
    """Run one style's flow once; return (seconds to its end, to the first value).

    Both are counted from before ``start_flow``: the end is when the caller has
    read the last final value and ``run.wait()`` returned.
    """
    flow, given, output, expected = STYLES[style]
    times = await timed_run(
        supervisor, flow, IOVal(given, n), output, expected(n), f"{style} N={n}",
        each=_total,
    )  # fmt: skip
    return times.end, times.first


def _total(value: Any) -> int:
    """A value of the final output, or the sum of a list of them."""
    return sum(value) if isinstance(value, list) else int(value)


async def style_first(supervisor: Supervisor, style: str, n: int) -> float:
    """Seconds from before ``start_flow`` to the first final value of a run.

    The run is cancelled once that value is read, so a big N costs no more than
    a small one.
    """
    flow, given, output, _ = STYLES[style]
    start = time.perf_counter()
    run = await supervisor.start_flow(flow, inputs=[IOVal(given, n)])
    async with aclosing(run[output].stream()) as values:
        await anext(values)
    first = time.perf_counter() - start
    await run.cancel()
    with contextlib.suppress(RunFailedError):  # cancelled, as asked
        await run.wait()
    await supervisor.store.delete_run(run.id)
    return first


async def first_times(
    redis_url: str | None, style: str, n: int, runs: int, *, warm: bool = True
) -> list[float]:
    """Time to the first final value of ``runs`` runs of one style, in one loop.

    With ``warm`` a short run goes first (connections, call models); without, the
    first timed run is the first run of the process.
    """
    async with make_supervisor(redis_url) as supervisor:
        if warm:
            await style_once(supervisor, style, 1000)
        return [await style_first(supervisor, style, n) for _ in range(runs)]


def main(argv: list[str]) -> int:
    """``python -m benchmarks.styles first BACKEND STYLE N [REDIS_URL]``.

    Prints the seconds to the first final value of the first run of this fresh
    process (what ``rows/styles.py`` measures as "first run of a process").
    """
    if len(argv) not in (4, 5) or argv[0] != "first":
        print(main.__doc__, file=sys.stderr)
        return 2
    _, backend, style, n, *url = argv
    import anyio

    (seconds,) = anyio.run(
        functools.partial(first_times, warm=False),
        url[0] if url else None,
        style,
        int(n),
        1,
        backend=backend,
    )
    print(json.dumps({"seconds": seconds}))
    return 0


async def paired_times(
    redis_url: str | None, styles: list[str], n: int
) -> dict[str, tuple[float, float, float, float]]:
    """For each of ``styles``, time bare-value W3 and then the style, in one loop.

    Returns style -> (bare's seconds, the style's seconds, bare's CPU seconds,
    the style's CPU seconds): each pair ran back to back, so on a noisy machine
    their ratio holds better than either figure. CPU is this process's (all its
    threads; not the Redis server's), which other processes disturb less.
    """
    pairs: dict[str, tuple[float, float, float, float]] = {}

    async def timed(supervisor: Supervisor, style: str) -> tuple[float, float]:
        cpu = time.process_time()
        seconds, _ = await style_once(supervisor, style, n)
        return seconds, time.process_time() - cpu

    async with make_supervisor(redis_url) as supervisor:
        for style in ("bare", *styles):  # connect, build call models, threads
            await style_once(supervisor, style, min(n, 1000))
        for style in styles:
            bare, bare_cpu = await timed(supervisor, "bare")
            seconds, cpu = await timed(supervisor, style)
            pairs[style] = (bare, seconds, bare_cpu, cpu)
    return pairs


async def style_times(
    redis_url: str | None, styles: list[str], n: int, *, first: bool = False
) -> dict[str, float]:
    """Time one run of each of ``styles`` in one event loop (after warm-ups).

    Returns the seconds of each style's run (with ``first``: to its first value).
    """
    results: dict[str, Any] = {}
    async with make_supervisor(redis_url) as supervisor:
        for style in styles:  # connect, build call models, start worker threads
            await style_once(supervisor, style, min(n, 1000))
        for style in styles:
            results[style] = await style_once(supervisor, style, n)
    return {style: r[1] if first else r[0] for style, r in results.items()}


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
