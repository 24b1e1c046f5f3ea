"""The crash test's flow, and its implementations (each service registers some).

``cr_source`` (service A) yields 0..n-1, ``cr_double`` (service B) doubles,
``cr_increment`` (service A) adds 1: the output is exactly {2i + 1}. Every
processor is deterministic. Two things are for the test only and change no value:

- each implementation writes the pid of the process running it to
  ``$DG_CRASH_DIR/<processor>`` when it starts, so the test knows whom to kill;
- while ``$DG_CRASH_DIR/slow`` exists, ``cr_source`` takes 1 ms a value and
  ``cr_double`` 2 ms, so the run lasts as long as the test keeps killing workers.
"""

import os
from collections.abc import AsyncIterator
from pathlib import Path

import anyio

from datagraph import IO, Flow, Processor

source = Processor(name="cr_source", inputs=["cr_n"], outputs=["cr_numbers"])
double = Processor(name="cr_double", inputs=["cr_numbers"], outputs=["cr_doubled"])
increment = Processor(name="cr_increment", inputs=["cr_doubled"], outputs=["cr_out"])

FLOW = Flow.from_processors(source, double, increment).resolve()
#: Service A's processors; service B implements the rest.
SERVICE_A = (source.name, increment.name)
SERVICE_B = (double.name,)


def _where() -> Path:
    return Path(os.environ["DG_CRASH_DIR"])


def _started(processor: str) -> None:
    """Tell the test which process runs ``processor`` now."""
    target = _where() / processor
    partial = target.with_suffix(f".{os.getpid()}")
    partial.write_text(str(os.getpid()))
    partial.replace(target)  # atomic: the test never reads half a pid


def implement_service_a() -> None:
    """Register service A's implementations in this process."""
    slow = _where() / "slow"

    @source
    async def _source(cr_n: IO[int]) -> AsyncIterator[int]:
        _started(source.name)
        for i in range(await cr_n.first()):
            if slow.exists():
                await anyio.sleep(0.001)
            yield i

    @increment
    async def _increment(cr_doubled: IO[int]) -> AsyncIterator[int]:
        _started(increment.name)
        async for x in cr_doubled.stream():
            yield x + 1


def implement_service_b() -> None:
    """Register service B's implementations in this process."""
    slow = _where() / "slow"

    @double
    async def _double(cr_numbers: IO[int]) -> AsyncIterator[int]:
        _started(double.name)
        async for x in cr_numbers.stream():
            if slow.exists():
                await anyio.sleep(0.002)
            yield x * 2
