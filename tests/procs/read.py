"""Child process: look a run up by id and print its output values as they arrive.

Usage: python -m tests.procs.read REDIS_URL PREFIX RUN_ID STREAM BACKEND
"""

import sys

import anyio

from datagraph import Supervisor


async def main(url: str, prefix: str, run_id: str, stream: str) -> None:
    supervisor = Supervisor(redis_config={"url": url, "prefix": prefix})
    run = await supervisor.get_run(run_id)
    async for value in run[stream].stream():
        print(value, flush=True)
    print("end", flush=True)


if __name__ == "__main__":
    url, prefix, run_id, stream, backend = sys.argv[1:]
    anyio.run(main, url, prefix, run_id, stream, backend=backend)
