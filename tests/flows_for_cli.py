"""Flows the viz and CLI tests draw and run, found by import path as a user's would be.

The ``viz_`` processors are declarations only: drawing a flow needs no
implementation. The ``cli_`` processors are implemented too, for ``datagraph run``
(importing this module registers them). Names carry a prefix because the processor
registry is global to the process.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import anyio

from datagraph import IO, Flow, Processor

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

# The ETL demo's shape: a chain, with a second output (rejects) off the middle.
extract = Processor(name="viz_extract", inputs=["folder"], outputs=["files"])
parse = Processor(name="viz_parse", inputs=["files"], outputs=["records"])
transform = Processor(
    name="viz_transform", inputs=["records"], outputs=["orders", "rejects"]
)
load = Processor(name="viz_load", inputs=["orders"], outputs=["loaded"], retries=2)

etl = Flow.from_processors(extract, parse, transform, load).resolve()

# Every feature a drawing must show: a fan-out (``numbers`` is read by two
# processors), a fan-in (``merge`` reads two streams), a processor that waits for
# complete inputs, and names that need quoting in every format.
ODD = 'the "odd" stream \\ #1 <x> & `y` | end'
double = Processor(name="viz_double", inputs=["numbers"], outputs=["doubled"])
square = Processor(name="viz_square", inputs=["numbers"], outputs=[ODD])
merge = Processor(
    name="viz merge 'all'",
    inputs=["doubled", ODD],
    outputs=["merged", "end"],
    wait=True,
)
audit = Processor(name="viz_audit", inputs=["numbers"], outputs=["audit log"])

shapes = Flow.from_processors(double, square, merge, audit).resolve()


def make_shapes() -> Flow:
    """Return an unresolved flow: the CLI resolves it (a zero-argument factory)."""
    return Flow.from_processors(double, square, merge, audit)


# A loop: resolving it fails with a CycleError.
_loop_a = Processor(name="viz_loop_a", inputs=["ping"], outputs=["pong"])
_loop_b = Processor(name="viz_loop_b", inputs=["pong"], outputs=["ping"])
cyclic = Flow.from_processors(_loop_a, _loop_b)

not_a_flow = 42


def needs_arguments(size: int) -> Flow:
    """Return a flow, but only when given an argument: the CLI cannot call it."""
    del size
    return shapes


def broken_factory() -> Flow:
    """Fail as a user's factory might."""
    msg = "the factory could not reach its config"
    raise RuntimeError(msg)


# --------------------------------------------------------- flows that really run

cli_numbers = Processor(name="cli_numbers", inputs=["count"], outputs=["numbers"])


@cli_numbers
async def _cli_numbers(count: IO[int]) -> AsyncIterator[int]:
    """0..n-1 for each n given (several values of ``count`` follow each other)."""
    async for n in count.stream():
        for i in range(n):
            yield i


cli_squares = Processor(name="cli_squares", inputs=["numbers"], outputs=["squares"])


@cli_squares
async def _cli_squares(numbers: IO[int]) -> AsyncIterator[int]:
    async for n in numbers.stream():
        yield n * n


cli_total = Processor(
    name="cli_total", inputs=["squares"], outputs=["total"], wait=True
)


@cli_total
async def _cli_total(squares: IO[int]) -> int:
    return sum(await squares.collect())


cli_shout = Processor(name="cli_shout", inputs=["words"], outputs=["loud"])


@cli_shout
async def _cli_shout(words: IO[Any]) -> AsyncIterator[Any]:
    async for word in words.stream():
        yield word.upper() if isinstance(word, str) else {"not a string": word}


#: One input, one output: ``count`` -> ``squares``.
squares = Flow.from_processors(cli_numbers, cli_squares).resolve()

#: Two inputs (``count``, ``words``) and two outputs (``total``, ``loud``).
demo = Flow.from_processors(cli_numbers, cli_squares, cli_total, cli_shout).resolve()

cli_explode = Processor(name="cli_explode", inputs=["numbers"], outputs=["kept"])


@cli_explode
async def _cli_explode(numbers: IO[int]) -> AsyncIterator[int]:
    async for n in numbers.stream():
        if n == 3:
            msg = f"cannot take {n}"
            raise ValueError(msg)
        yield n


cli_after = Processor(name="cli_after", inputs=["kept"], outputs=["after"])


@cli_after
async def _cli_after(kept: IO[int]) -> AsyncIterator[int]:
    async for n in kept.stream():
        yield n


#: ``cli_explode`` fails on its fourth value; ``cli_after`` fails because of it.
failing = Flow.from_processors(cli_numbers, cli_explode, cli_after).resolve()

cli_ticker = Processor(name="cli_ticker", inputs=["gate"], outputs=["ticks"])


@cli_ticker
async def _cli_ticker(gate: IO[str]) -> AsyncIterator[int]:
    """Tick every 20 ms until the file named by ``gate`` exists."""
    path = anyio.Path(await gate.first())
    tick = 0
    while not await path.exists():
        yield tick
        tick += 1
        await anyio.sleep(0.02)


cli_tally = Processor(name="cli_tally", inputs=["ticks"], outputs=["tally"], wait=True)


@cli_tally
async def _cli_tally(ticks: IO[int]) -> int:
    return len(await ticks.collect())


#: Runs until a file exists: a run that is still going while a test looks at it.
ticking = Flow.from_processors(cli_ticker, cli_tally).resolve()

cli_mending = Processor(name="cli_mending", inputs=["marker"], outputs=["mended"])


@cli_mending
async def _cli_mending(marker: IO[str]) -> AsyncIterator[int]:
    """Yield 0..4, but fail after 2 values while the file ``marker`` is missing."""
    path = anyio.Path(await marker.first())
    for i in range(5):
        if i == 2 and not await path.exists():
            msg = f"{path.name} is missing"
            raise FileNotFoundError(msg)
        yield i


#: Fails until its marker file exists; then ``datagraph runs resume`` mends it.
mending = Flow.from_processors(cli_mending).resolve()
