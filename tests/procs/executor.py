"""An executor that runs each job in a new Python process, for liveness tests.

A real executor, if a simple one: ``dispatch`` starts ``python -m
tests.procs.job ...``, which attaches to the same Redis and runs the job. Each
job's latest process id is written to ``<pids>/<job>`` so a test can kill it.
"""

import os
import subprocess
import sys
from pathlib import Path

from datagraph.executors import Executor

ROOT = Path(__file__).resolve().parent.parent.parent


class ProcessExecutor(Executor):
    """Start every dispatched job as a process of its own."""

    def __init__(
        self, url: str, prefix: str, backend: str, pids: Path, *, takes_over: bool
    ) -> None:
        self.url, self.prefix, self.backend, self.pids = url, prefix, backend, pids
        self.takes_over = takes_over
        self.children: list[subprocess.Popen[bytes]] = []

    def __repr__(self) -> str:
        return f"ProcessExecutor(takes_over={self.takes_over})"

    def where(self, job: str) -> str:
        return f"a process of its own ({job})"

    async def dispatch(self, run_id: str, job: str) -> None:
        # Popen, not anyio.open_process: the child must outlive this event loop
        # (and this process), as a worker of a real engine would.
        child = subprocess.Popen(  # noqa: ASYNC220 - returns at once
            [sys.executable, "-m", "tests.procs.job", self.url, self.prefix,
             self.backend, str(self.pids), str(self.takes_over), run_id, job],
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )  # fmt: skip
        (self.pids / job).write_text(str(child.pid))
        self.children.append(child)

    def pid(self, job: str) -> int:
        """Return the id of the process that last started ``job``."""
        return int((self.pids / job).read_text())

    def close(self) -> None:
        """Stop the processes this object started that still run."""
        for child in self.children:
            if child.poll() is None:
                child.kill()
            child.wait()
