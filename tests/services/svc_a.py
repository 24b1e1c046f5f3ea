"""Service A: squares, the twelve-processor chain and the ticker.

Served with ``celery -A tests.services.svc_a worker`` (the default prefork pool).
"""

import inspect
from collections.abc import AsyncIterator

import anyio

from datagraph import IO

from . import shared
from .app import serve

app = serve()


@shared.square
async def _square(svc_numbers: IO[int]) -> AsyncIterator[int]:
    async for n in svc_numbers.stream():
        yield n * n


def _implement_link(index: int) -> None:
    """Implement link ``index`` of the chain, whose input is named after it."""
    proc = shared.chain[index]
    (stream,) = proc.inputs

    async def add_one(**inputs: IO[int]) -> AsyncIterator[int]:
        async for n in inputs[stream].stream():
            yield n + 1

    # The parameter must carry the input's name: give the function that signature.
    param = inspect.Parameter(stream, inspect.Parameter.KEYWORD_ONLY)
    add_one.__signature__ = inspect.Signature([param.replace(annotation=IO[int])])  # type: ignore[attr-defined]
    add_one.__annotations__ = {stream: IO[int]}
    add_one.__qualname__ = f"add_one_{index}"
    proc(add_one)


for _index in range(shared.CHAIN_LENGTH):
    _implement_link(_index)


@shared.ticker
async def _ticker(svc_start: IO[int]) -> AsyncIterator[int]:
    i = await svc_start.first()
    while True:
        yield i
        i += 1
        await anyio.sleep(0.001)  # a source that never ends on its own
