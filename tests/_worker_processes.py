"""A worker command of some engine (Celery, Dramatiq) running for the tests.

``WorkerProcess`` is what the engines' handles share: the command runs in a process
group of its own (so ``kill()`` takes its pool along), its output is read by a
thread all along (so the pipe never fills) and kept for the tests' messages, and
it stops as a process manager stops it (SIGTERM once, then SIGKILL).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import IO, TYPE_CHECKING, Self

import pytest

if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = ("ROOT", "OutputLog", "WorkerProcess", "stop_workers")

ROOT = Path(__file__).resolve().parents[1]


def _pids_by_parent() -> dict[int, list[int]]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue  # gone meanwhile
        # "pid (comm) state ppid ...": comm may hold spaces and parentheses.
        ppid = int(stat.rpartition(")")[2].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    return children


class OutputLog:
    """Lines of a subprocess's output, read by a thread, with waits on them."""

    def __init__(self, stream: IO[str]) -> None:
        self._stream_file = stream
        self.lines: list[str] = []
        self._changed = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self._thread.start()

    def _read(self, stream: IO[str]) -> None:
        for line in stream:
            with self._changed:
                self.lines.append(line.rstrip("\n"))
                self._changed.notify_all()
        with self._changed:
            self._closed = True
            self._changed.notify_all()

    def wait_for(self, text: str, timeout: float, *, count: int = 1) -> bool:
        """Wait until ``count`` lines contain ``text``; False if the output ended."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while sum(text in line for line in self.lines) < count:
                left = deadline - time.monotonic()
                if self._closed or left <= 0:
                    return False
                self._changed.wait(left)
            return True

    def close(self) -> None:
        """Wait for the output to end (the process exited), then close it."""
        self._thread.join(10)
        self._stream_file.close()

    def text(self) -> str:
        """Everything read so far."""
        with self._changed:
            return "\n".join(self.lines)


class WorkerProcess:
    """A running worker command: its main process, its pool and its output.

    Args:
        name: what it serves, for messages.
        argv: the command line.
        env: its whole environment.
        ready: text of the output line each of its ``ready_count`` worker
            processes prints once it consumes.
        ready_count: how many such lines mean the whole worker is ready.
    """

    def __init__(
        self,
        name: str,
        argv: list[str],
        env: Mapping[str, str],
        *,
        ready: str,
        ready_count: int = 1,
    ) -> None:
        self.app = name
        self.argv = list(argv)
        self.env = dict(env)
        self.ready = ready
        self.ready_count = ready_count
        self._terminated = False
        self.process = subprocess.Popen(
            self.argv,
            cwd=ROOT,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,  # its own process group: kill() ends them all
        )
        assert self.process.stdout is not None
        self.log = OutputLog(self.process.stdout)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.app!r}, pid={self.pid})"

    @property
    def pid(self) -> int:
        """The main process (which forks the pool's processes)."""
        return self.process.pid

    def children(self) -> list[int]:
        """The pids of the processes the main process forked (none for threads)."""
        return sorted(_pids_by_parent().get(self.pid, []))

    def kill_child(self, pid: int) -> None:
        """SIGKILL one of the worker's child processes."""
        if pid not in self.children():
            msg = f"{pid} is not a child process of {self}"
            raise ValueError(msg)
        os.kill(pid, signal.SIGKILL)

    def wait_ready(self, timeout: float = 60.0) -> Self:
        """Wait until the worker says it consumes; fail the test if it won't."""
        if not self.log.wait_for(self.ready, timeout, count=self.ready_count):
            self.kill()
            pytest.fail(
                f"{self} did not become ready in {timeout} s; its output:\n"
                f"{self.log.text()}",
                pytrace=False,
            )
        return self

    def kill(self) -> None:
        """SIGKILL the whole worker: the main process and its children."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()
        self.log.close()  # else a killed worker's pipe stays open: ResourceWarning

    def terminate(self) -> None:
        """Ask the worker to shut down warmly (SIGTERM, once), without waiting.

        Once: an engine may take a second SIGTERM as "exit now" (Dramatiq does),
        skipping the warm shutdown that hands running processors over.
        """
        if self.process.poll() is None and not self._terminated:
            self._terminated = True
            with contextlib.suppress(ProcessLookupError):
                self.process.terminate()

    def stop(self, timeout: float = 15) -> None:
        """Shut the worker down warmly (SIGTERM), or kill it after ``timeout``."""
        self.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout)
        self.kill()  # whatever is left of the group

    def restart(self, *, wait: bool = True) -> Self:
        """Start the same command again (after kill or stop), as a manager does."""
        self.stop()
        fresh = type(self)(
            self.app,
            self.argv,
            self.env,
            ready=self.ready,
            ready_count=self.ready_count,
        )
        return fresh.wait_ready() if wait else fresh


def stop_workers(*workers: WorkerProcess, timeout: float = 15) -> None:
    """Stop several workers at once (each warm shutdown takes seconds)."""
    for worker in workers:
        worker.terminate()
    for worker in workers:
        worker.stop(timeout)
