"""Child process: start the stalling flow on Redis, print the run id, keep running.

Usage: python -m tests.procs.produce REDIS_URL PREFIX BACKEND
"""

import sys

import anyio

from datagraph import IOVal, Supervisor

from .flows import FLOW


async def main(url: str, prefix: str) -> None:
    supervisor = Supervisor(redis_config={"url": url, "prefix": prefix})
    run = await supervisor.start_flow(FLOW, inputs=[IOVal("mp_n", 3)])
    print(run.id, flush=True)
    await anyio.sleep_forever()


if __name__ == "__main__":
    anyio.run(main, sys.argv[1], sys.argv[2], backend=sys.argv[3])
