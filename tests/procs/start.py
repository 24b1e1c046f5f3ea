"""Child process: start the stalling flow with LocalExecutor, print its id, go.

Usage: python -m tests.procs.start REDIS_URL PREFIX BACKEND (die|leave)

Once its processor runs, it either kills itself with SIGKILL (``die``: an OOM
killer or a lost machine, nothing gets to record anything) or returns from
``main()`` (``leave``: the event loop ends while the run goes on, a common slip
in scripts; its processors stop with the loop and must say so).
"""

import os
import signal
import sys

import anyio

from datagraph import IOVal, Supervisor

from .flows import FLOW


async def main(url: str, prefix: str, how: str) -> None:
    supervisor = Supervisor(redis_config={"url": url, "prefix": prefix})
    run = await supervisor.start_flow(FLOW, inputs=[IOVal("mp_n", 3)])
    async for _ in run["mp_values"].stream():
        break  # the processor runs
    print(run.id, flush=True)
    if how == "die":
        os.kill(os.getpid(), signal.SIGKILL)


if __name__ == "__main__":
    url, prefix, backend, how = sys.argv[1:]
    anyio.run(main, url, prefix, how, backend=backend)
