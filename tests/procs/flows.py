"""A flow whose producer hangs, run in a child process that the test then kills."""

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
