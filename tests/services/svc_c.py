"""Service C: echoes squares.

Served with ``celery -A tests.services.svc_c worker --pool solo``.
"""

from collections.abc import AsyncIterator

from datagraph import IO

from . import shared
from .app import serve

app = serve()


@shared.echo
async def _echo(svc_squares: IO[int]) -> AsyncIterator[int]:
    async for n in svc_squares.stream():
        yield n
