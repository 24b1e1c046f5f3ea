"""Child process: start the stalling flow with LocalExecutor and return at once.

Usage: python -m tests.procs.start_and_leave REDIS_URL PREFIX BACKEND

The event loop ends while the run goes on, a common slip in scripts: its
processors are stopped with the loop, and must say so.
"""

import sys

import anyio

from datagraph import IOVal, Supervisor

from .flows import FLOW


async def main(url: str, prefix: str) -> None:
    supervisor = Supervisor(redis_config={"url": url, "prefix": prefix})
    run = await supervisor.start_flow(FLOW, inputs=[IOVal("mp_n", 3)])
    async for _ in run["mp_values"].stream():
        break  # the processor runs
    print(run.id, flush=True)


if __name__ == "__main__":
    anyio.run(main, sys.argv[1], sys.argv[2], backend=sys.argv[3])
