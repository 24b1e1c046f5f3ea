"""Real ``dramatiq`` worker processes for the tests, started and stopped here."""

from __future__ import annotations

import contextlib
import os
import sys
from typing import TYPE_CHECKING, Self

from _worker_processes import ROOT, WorkerProcess, stop_workers

if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping

READY = "Worker process is ready for action."
BOOT_TIMEOUT = 30.0


class DramatiqWorker(WorkerProcess):
    """A running ``dramatiq <module>`` command: its main process and its log."""

    def __init__(self, module: str, args: list[str], env: Mapping[str, str]) -> None:
        self.module = module
        self.args = args
        processes = int(args[args.index("--processes") + 1])
        super().__init__(
            module,
            [sys.executable, "-m", "dramatiq", module, *args],
            env,
            ready=READY,
            ready_count=processes,  # each worker process says it
        )

    def wait_ready(self, timeout: float = BOOT_TIMEOUT) -> Self:
        """Wait until every worker process said it is ready (or fail the test)."""
        return super().wait_ready(timeout)

    def restart(self, *, wait: bool = True) -> Self:
        """Start the same command again (after it died), as a process manager does."""
        self.stop()
        worker = type(self)(self.module, self.args, self.env)
        return worker.wait_ready() if wait else worker


def worker_env(**extra: str) -> dict[str, str]:
    """This process's environment for a worker: ROOT importable, no stray settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DATAGRAPH_")}
    paths = [str(ROOT), env.get("PYTHONPATH", "")]
    env["PYTHONPATH"] = os.pathsep.join(p for p in paths if p)
    env.update(extra)
    return env


@contextlib.contextmanager
def dramatiq_workers(
    modules: list[str],
    env: Mapping[str, str],
    *,
    processes: int = 1,
    threads: int = 2,
) -> Iterator[list[DramatiqWorker]]:
    """Start ``dramatiq <module>`` for each module; stop them all afterwards."""
    workers: list[DramatiqWorker] = []
    try:
        for module in modules:
            args = ["--processes", str(processes), "--threads", str(threads)]
            workers.append(DramatiqWorker(module, args, env))
        for worker in workers:
            worker.wait_ready()
        yield workers
    finally:
        stop_workers(*workers)
