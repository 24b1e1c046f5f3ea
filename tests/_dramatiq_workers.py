"""Real ``dramatiq`` worker processes for the tests, started and stopped here."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import IO, TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping

ROOT = Path(__file__).resolve().parent.parent
READY = "Worker process is ready for action."
BOOT_TIMEOUT = 30.0


class DramatiqWorker:
    """A running ``dramatiq <module>`` command: its main process and its log.

    Its output is read by a thread all along (so the pipe never fills), kept for
    the failure messages of the tests.
    """

    def __init__(self, module: str, args: list[str], env: Mapping[str, str]) -> None:
        self.module = module
        self.args = args
        self.env = dict(env)
        self.processes = int(args[args.index("--processes") + 1])
        self.lines: list[str] = []
        self._terminated = False
        self._ready = threading.Semaphore(0)
        self.process = subprocess.Popen(
            [sys.executable, "-m", "dramatiq", module, *args],
            cwd=ROOT,
            env=dict(env),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,  # its own process group: stop() ends them all
        )
        assert self.process.stdout is not None
        self._reader = threading.Thread(
            target=self._read, args=(self.process.stdout,), daemon=True
        )
        self._reader.start()

    def __repr__(self) -> str:
        return f"DramatiqWorker({self.module!r}, pid={self.pid})"

    @property
    def pid(self) -> int:
        """The pid of the main process (which forks the worker processes)."""
        return self.process.pid

    def _read(self, stream: IO[str]) -> None:
        for line in stream:
            self.lines.append(line.rstrip("\n"))
            if READY in line:
                self._ready.release()

    def wait_ready(self) -> None:
        """Block until every worker process said it is ready (or fail)."""
        for _ in range(self.processes):
            if not self._ready.acquire(timeout=BOOT_TIMEOUT):
                self.stop()
                msg = f"{self} did not boot in {BOOT_TIMEOUT} s:\n{self.log()}"
                raise RuntimeError(msg)

    def children(self) -> list[int]:
        """The pids of the worker processes the main process forked."""
        path = Path(f"/proc/{self.pid}/task/{self.pid}/children")
        try:
            return sorted(int(pid) for pid in path.read_text().split())
        except OSError:  # the main process is gone
            return []

    def kill_child(self, pid: int) -> None:
        """SIGKILL one worker process (Dramatiq's main process then shuts down)."""
        if pid not in self.children():
            msg = f"{pid} is not a worker process of {self}"
            raise ValueError(msg)
        os.kill(pid, signal.SIGKILL)

    def kill(self) -> None:
        """SIGKILL the whole worker: the main process and its worker processes."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()
        self._reader.join(5)
        if self.process.stdout is not None:
            self.process.stdout.close()

    def restart(self, *, wait: bool = True) -> DramatiqWorker:
        """Start the same command again (after it died), as a process manager does."""
        self.stop()
        worker = DramatiqWorker(self.module, self.args, self.env)
        if wait:
            worker.wait_ready()
        return worker

    def log(self) -> str:
        """Everything the worker printed so far."""
        return "\n".join(self.lines)

    def terminate(self) -> None:
        """Ask the worker to shut down (SIGTERM, once), without waiting for it.

        Once: Dramatiq takes a second SIGTERM as "exit now", skipping the warm
        shutdown that hands the running processors over.
        """
        if self.process.poll() is None and not self._terminated:
            self._terminated = True
            self.process.send_signal(signal.SIGTERM)

    def stop(self) -> None:
        """Stop the worker as a process manager does (SIGTERM, then SIGKILL)."""
        if self.process.poll() is None:
            self.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        with contextlib.suppress(ProcessLookupError):  # whatever is left of it
            os.killpg(self.process.pid, signal.SIGKILL)
        self._reader.join(5)
        if self.process.stdout is not None:
            self.process.stdout.close()


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
        for worker in workers:  # all shut down at once: each takes seconds
            worker.terminate()
        for worker in workers:
            worker.stop()
