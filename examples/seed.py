"""The seed example: the program Datagraph was first designed to run, kept as written.

Prints 0 2 4 6 8 on trio, then again on asyncio. Uses the Redis server named by
``DATAGRAPH_REDIS_URL`` when that is set, else the embedded in-memory store::

    python examples/seed.py
    DATAGRAPH_REDIS_URL=redis://localhost:6379/0 python examples/seed.py
    datagraph graph examples.seed:FLOW      # draw it (importing runs nothing)

The code below is the seed's own, line for line (which is why it is exempt from
import sorting, formatting and mypy's check for unannotated functions), except that
it imports ``os``, names its flow ``FLOW`` for the ``datagraph`` command, and runs
only as a script: it picks the store from the environment and runs on both backends.
``start_flow`` returns a ``Run``, a ``dict[str, IO[Any]]`` of the outputs that
also carries the run's id, status and controls.
"""
# ruff: noqa: I001
# mypy: disable-error-code="no-untyped-def"
# fmt: off

import os

from collections.abc import AsyncIterator
from typing import Annotated, Any

import anyio
from datagraph import Depends, IO, IOVal, LocalExecutor, Flow, Supervisor, Processor

def get_multiplier():
    return 2

foobar = Processor(name="foobar", inputs=["foo"], outputs=["bar"])

@foobar
async def _foobar(
    foo: IO[int],
    multiplier: Annotated[int, Depends(get_multiplier)],
) -> AsyncIterator[IOVal[int]]:
    foo_val = await foo.first()
    for i in range(foo_val):
        yield IOVal(name="bar", value=i * multiplier)

async def main():
    flow = Flow.from_tasks(foobar)          # alias of Flow.from_processors
    flow.resolve()                          # validates; required before starting
    result: dict[str, IO[Any]] = await Supervisor.instance.start_flow(
        flow, inputs=[IOVal(name="foo", value=5)]
    )
    async for val in result["bar"].stream():
        print(val)                          # 0 2 4 6 8

FLOW = Flow.from_tasks(foobar).resolve()   # for datagraph graph/run examples.seed:FLOW

if __name__ == "__main__":
    redis_url = os.environ.get("DATAGRAPH_REDIS_URL")
    if redis_url:
        Supervisor.attach(redis_config={"url": redis_url}, executor=LocalExecutor())
    else:  # no redis_config: the embedded in-memory store
        Supervisor.attach(executor=LocalExecutor())
    anyio.run(main, backend="trio")
    anyio.run(main, backend="asyncio")
