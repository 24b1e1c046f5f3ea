"""Child process: start the stalling flow with LocalExecutor, print its id, die.

Usage: python -m tests.procs.start_and_die REDIS_URL PREFIX BACKEND

It kills itself with SIGKILL once its processor is running, as an OOM killer or a
lost machine would: nothing gets to record anything.
"""

import os
import signal
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
    os.kill(os.getpid(), signal.SIGKILL)


if __name__ == "__main__":
    anyio.run(main, sys.argv[1], sys.argv[2], backend=sys.argv[3])
