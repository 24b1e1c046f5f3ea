"""Service "doubling": implements dq_double and dq_endless."""

from collections.abc import AsyncIterator

import anyio

from datagraph import IO

from .shared import attach, double, endless

attach()


@double
async def _double(dq_numbers: IO[int]) -> AsyncIterator[int]:
    async for x in dq_numbers.stream():
        yield x * 2


@endless
async def _endless(dq_seed: IO[int]) -> AsyncIterator[int]:
    tick = await dq_seed.first()
    while True:  # until the run is cancelled
        yield tick
        tick += 1
        await anyio.sleep(0.01)
