"""Child process: run one job of a run, as a worker of ProcessExecutor would.

Usage: python -m tests.procs.job URL PREFIX BACKEND PIDS TAKES_OVER RUN_ID JOB
"""

import sys
from pathlib import Path

import anyio

from datagraph import Supervisor

from . import flows  # noqa: F401 - registers the implementations
from .executor import ProcessExecutor


async def main(argv: list[str]) -> None:
    url, prefix, backend, pids, takes_over, run_id, job = argv
    executor = ProcessExecutor(
        url, prefix, backend, Path(pids), takes_over=takes_over == "True"
    )
    supervisor = Supervisor(
        redis_config={"url": url, "prefix": prefix}, executor=executor
    )
    try:
        await supervisor.run_processor(run_id, job)
    finally:
        await supervisor.aclose()


if __name__ == "__main__":
    anyio.run(main, sys.argv[1:], backend=sys.argv[3])
