"""Service "doubling": implements dq_double and dq_endless."""

from collections.abc import AsyncIterator

import anyio

from datagraph import IO

from .shared import attach, double, endless, fan, fan_source

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


@fan_source
async def _fan_source(dq_fan_n: IO[int]) -> AsyncIterator[int]:
    for i in range(await dq_fan_n.first()):
        yield i


def _reader(offset: int) -> None:
    @fan[offset]
    async def _add(dq_fan: IO[int]) -> AsyncIterator[int]:
        async for x in dq_fan.stream():
            yield x + offset


for _offset in range(len(fan)):
    _reader(_offset)
