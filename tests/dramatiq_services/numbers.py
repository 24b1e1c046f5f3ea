"""Service "numbers": implements dq_source and dq_increment."""

from collections.abc import AsyncIterator

from datagraph import IO

from .shared import attach, increment, source

attach()


@source
async def _source(dq_n: IO[int]) -> AsyncIterator[int]:
    for i in range(await dq_n.first()):
        yield i


@increment
async def _increment(dq_doubled: IO[int]) -> AsyncIterator[int]:
    async for x in dq_doubled.stream():
        yield x + 1
