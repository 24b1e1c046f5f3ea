"""One event loop per worker process, hosting every processor the process runs.

Task engines (Celery, Dramatiq...) give each task a slot of a small pool, but a
streaming processor lives as long as its inputs: one slot per processor would
deadlock a flow with more processors than slots. So an engine's task only hands
its job to this host and returns at once; the host runs any number of jobs side by
side on one event loop (asyncio or trio) in a thread of the process. A job that
stops early (the process dies) is recovered from its lease in the store, not by the
engine redelivering the task.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from typing import TYPE_CHECKING, Any

import anyio.from_thread

from ..exceptions import ExecutorError

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable
    from concurrent.futures import Future

__all__ = ("BACKEND_ENV", "WorkerHost", "worker_backend")

#: Where a worker's event loop is chosen when the executor is not told.
BACKEND_ENV = "DATAGRAPH_WORKER_BACKEND"
_BACKENDS = ("asyncio", "trio")

logger = logging.getLogger("datagraph.worker")


def worker_backend(owner: str, backend: str | None) -> str:
    """Return the event loop a worker runs: ``backend``, ``$BACKEND_ENV``, asyncio.

    Raises:
        ExecutorError: it names no event loop Datagraph runs on.
    """
    backend = backend or os.environ.get(BACKEND_ENV) or "asyncio"
    if backend not in _BACKENDS:
        msg = (
            f"{owner} backend must be one of {list(_BACKENDS)}, got {backend!r} "
            f"(from backend= or ${BACKEND_ENV})"
        )
        raise ExecutorError(msg)
    return backend


class WorkerHost:
    """An event loop in a thread of this process that runs submitted jobs.

    The loop starts with the first job, in the process that submits it, so a host
    created before a pool forks its children starts a loop of its own in each
    child. Thread-safe: a threaded pool may submit from many threads.

    Args:
        backend: ``"asyncio"`` or ``"trio"``.
    """

    def __init__(self, backend: str = "asyncio") -> None:
        self.backend = backend
        self._lock = threading.Lock()
        self._pid: int | None = None
        self._portal: anyio.from_thread.BlockingPortal | None = None
        self._exit = contextlib.ExitStack()
        self._jobs: set[Future[Any]] = set()

    def __repr__(self) -> str:
        return f"WorkerHost(backend={self.backend!r}, jobs={len(self._jobs)})"

    def submit(self, job: Callable[[], Awaitable[None]]) -> None:
        """Start ``job()`` on the host's loop and return at once."""
        future = self._ensure_portal().start_task_soon(job)
        with self._lock:
            self._jobs.add(future)
        future.add_done_callback(self._done)

    def _ensure_portal(self) -> anyio.from_thread.BlockingPortal:
        with self._lock:
            if self._portal is None or self._pid != os.getpid():
                # A forked child inherits the parent's object but not its thread.
                self._exit = contextlib.ExitStack()
                self._jobs = set()
                self._portal = self._exit.enter_context(
                    anyio.from_thread.start_blocking_portal(
                        self.backend, name="datagraph-worker"
                    )
                )
                self._pid = os.getpid()
            return self._portal

    def _done(self, future: Future[Any]) -> None:
        with self._lock:
            self._jobs.discard(future)
        if not future.cancelled() and (exc := future.exception()) is not None:
            # Processors record their own failures; this is a bug or a lost store.
            logger.error("datagraph job failed", exc_info=exc)

    @property
    def running(self) -> int:
        """How many jobs are running now."""
        with self._lock:
            return len(self._jobs)

    def stop(self) -> None:
        """Cancel the running jobs and stop the loop (on worker shutdown).

        Jobs stopped this way leave their processors to be taken over.
        """
        with self._lock:
            portal, jobs = self._portal, list(self._jobs)
            self._portal = None
            if portal is None or self._pid != os.getpid():
                return
        for future in jobs:
            future.cancel()
        self._exit.close()
