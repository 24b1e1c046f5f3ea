"""A flow whose producer hangs, run in a child process that the test then kills."""

import os
from collections.abc import AsyncIterator

import anyio

from datagraph import IO, Flow, Processor

stalling = Processor(name="mp_stalling", inputs=["mp_n"], outputs=["mp_values"])


@stalling
async def _stalling(mp_n: IO[int]) -> AsyncIterator[int]:
    for i in range(await mp_n.first()):
        yield i
    await anyio.sleep_forever()  # a stuck worker


FLOW = Flow.from_processors(stalling).resolve()


# Liveness tests: a source that takes a few seconds and a stage reading it, each
# run in a process of its own by tests.procs.executor.ProcessExecutor.
lv_source = Processor(name="lv_source", inputs=["lv_n"], outputs=["lv_numbers"])
lv_double = Processor(name="lv_double", inputs=["lv_numbers"], outputs=["lv_doubled"])


@lv_source
async def _lv_source(lv_n: IO[int]) -> AsyncIterator[int]:
    n = await lv_n.first()
    gate = anyio.Path(os.environ["DG_LV_GATE"])
    for i in range(n):
        if i == n // 2:
            # Halfway, wait until the test has killed what it meant to kill.
            while not await gate.exists():  # noqa: ASYNC110 - another process makes it
                await anyio.sleep(0.02)
        yield i


@lv_double
async def _lv_double(lv_numbers: IO[int]) -> AsyncIterator[int]:
    async for n in lv_numbers.stream():
        yield n * 2


LIVENESS = Flow.from_processors(lv_source, lv_double).resolve()
