"""Service B: labels, totals and the tally of ticks.

Served with ``celery -A tests.services.svc_b worker --pool threads``.
"""

from collections.abc import AsyncIterator

from datagraph import IO

from . import shared
from .app import serve

app = serve()


@shared.label
async def _label(svc_squares: IO[int]) -> AsyncIterator[str]:
    async for n in svc_squares.stream():
        yield f"sq={n}"


@shared.total
async def _total(svc_squares: IO[int]) -> int:
    return sum(await svc_squares.collect())


@shared.tally
async def _tally(svc_ticks: IO[int]) -> AsyncIterator[int]:
    count = 0
    async for _ in svc_ticks.stream():
        count += 1
        if count % 100 == 0:
            yield count
