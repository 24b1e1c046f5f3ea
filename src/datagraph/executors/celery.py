"""Running processors on Celery workers, in whichever service implements them.

The process that starts a run sends one Celery task per job, named after the
processor (``datagraph.<processor>``), to the processor's queue. A service that
implements processors runs Celery's own ``celery -A <service> worker``; when that
worker starts, the executor registers a task for each processor implemented in
the process and, unless ``-Q`` says otherwise, makes the worker consume exactly
their queues. The task body hands the job to the process's ``WorkerHost`` (one
event loop running every processor of the process) and returns at once, so a
worker with two pool slots runs any number of streaming processors.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import anyio.to_thread

from .._streams import parse_job
from ..exceptions import ExecutorError
from ..processor import _registry
from ._base import Executor
from ._host import WorkerHost, worker_backend

if TYPE_CHECKING:
    from celery import Celery


__all__ = ("TASK_PREFIX", "CeleryExecutor", "QueueChoice")

logger = logging.getLogger("datagraph.celery")

#: Tasks and default queues are named ``datagraph.<processor>``.
TASK_PREFIX = "datagraph."

#: How ``CeleryExecutor(queue=...)`` chooses a processor's queue: one queue for
#: all, a mapping from processor name to queue, or a function of the processor's
#: name (returning None for the default).
QueueChoice = str | Mapping[str, str] | Callable[[str], str | None] | None


def _import_celery() -> Any:
    try:
        import celery.signals
    except ImportError as exc:
        msg = (
            "CeleryExecutor needs Celery, which is not installed: "
            "pip install 'datagraph[celery]'"
        )
        raise ImportError(msg) from exc
    return celery.signals


class CeleryExecutor(Executor):
    """Dispatch each processor as a Celery task to the workers that implement it.

    Every service creates one for its Celery app and attaches it:
    ``Supervisor.attach(redis_config=..., executor=CeleryExecutor(app))``. The
    store must be one that every process shares (Redis/Valkey).

    A processor's queue is, in order of precedence: the one ``queue`` names for
    it; the one the app's own ``task_routes`` give the task
    ``datagraph.<processor>``; else ``datagraph.<processor>``.

    Args:
        app: the Celery application (its broker carries the jobs).
        queue: a queue for every processor (a string), or per processor (a
            mapping from processor name to queue, or a function of the
            processor's name that returns a queue or None for the default).
        backend: the event loop that runs processors in this process's workers,
            ``"asyncio"`` or ``"trio"``. Default: ``$DATAGRAPH_WORKER_BACKEND``,
            else ``"asyncio"``.

    Raises:
        ImportError: Celery is not installed.
        ExecutorError: ``backend`` or ``queue`` is not valid.
    """

    takes_over = True

    def __init__(
        self, app: Celery, *, queue: QueueChoice = None, backend: str | None = None
    ) -> None:
        signals = _import_celery()
        backend = worker_backend("CeleryExecutor", backend)
        _check_queue(queue)
        self.app = app
        self.backend = backend
        self._queue = queue
        #: The event loop of this process that runs the jobs its worker receives.
        self.host = WorkerHost(backend)
        self._served: set[str] = set()
        self._user_queues = False  # the worker was started with -Q
        # Weak references (Celery's default): a dropped executor stops listening.
        signals.celeryd_init.connect(self._on_celeryd_init)
        signals.worker_init.connect(self._on_worker_init)
        signals.worker_process_shutdown.connect(self._on_process_shutdown)
        signals.worker_shutdown.connect(self._on_worker_shutdown)

    def __repr__(self) -> str:
        return f"CeleryExecutor(app={self.app.main!r}, backend={self.backend!r})"

    # ------------------------------------------------------------------ routing

    @staticmethod
    def task_name(processor: str) -> str:
        """Return the name of the Celery task that runs ``processor``."""
        return TASK_PREFIX + processor

    def _chosen_queue(self, processor: str) -> str | None:
        """The queue the ``queue`` argument names for a processor, if any."""
        choice = self._queue
        if choice is None or isinstance(choice, str):
            return choice
        if isinstance(choice, Mapping):
            return choice.get(processor)
        chosen: object = choice(processor)  # checked: user code
        if chosen is None:
            return None
        if not isinstance(chosen, str) or not chosen:
            msg = (
                f"CeleryExecutor queue function returned {chosen!r} for processor "
                f"{processor!r}; it must return a queue name or None"
            )
            raise ExecutorError(msg)
        return chosen

    def _routed(self, processor: str) -> bool:
        """Whether the app's ``task_routes`` route the processor's task."""
        router = self.app.amqp.router
        name = self.task_name(processor)
        return bool(router.routes and router.lookup_route(name, (), {}, {}))

    def queue_of(self, processor: str) -> str:
        """Return the queue that jobs of ``processor`` are sent to."""
        chosen = self._chosen_queue(processor)
        if chosen is not None:
            return chosen
        if self._routed(processor):
            route = self.app.amqp.router.route({}, self.task_name(processor))
            queue = route.get("queue")
            if queue is not None:
                return str(getattr(queue, "name", queue))
        return self.task_name(processor)

    def where(self, job: str) -> str:
        """Say which Celery queue a job waits in."""
        name, _ = parse_job(job)
        return f"celery queue {self.queue_of(name)!r}"

    # ----------------------------------------------------------------- sending

    async def dispatch(self, run_id: str, job: str) -> None:
        """Send the job's task to its processor's queue.

        Raises:
            ExecutorError: the broker did not take the task.
        """
        name, _ = parse_job(job)
        task = self.task_name(name)
        chosen = self._chosen_queue(name)
        # The app's task_routes decide when the executor was not told a queue.
        queue = chosen or (None if self._routed(name) else task)
        send = functools.partial(
            self.app.send_task, task, args=(run_id, job), queue=queue,
            ignore_result=True,
        )  # fmt: skip
        try:
            # Publishing is blocking kombu I/O: keep it off the event loop.
            await anyio.to_thread.run_sync(send)
        except Exception as exc:
            msg = (
                f"could not send job {job!r} of run {run_id} to Celery "
                f"({self.where(job)}): {type(exc).__name__}: {exc}"
            )
            raise ExecutorError(msg) from exc

    # ------------------------------------------------------------ worker side

    def _on_celeryd_init(self, sender: Any = None, **kwargs: Any) -> None:
        instance = kwargs.get("instance")
        if instance is not None and instance.app is self.app:
            options = kwargs.get("options") or {}
            self._user_queues = bool(options.get("queues"))

    def _on_worker_init(self, sender: Any = None, **kwargs: Any) -> None:
        if sender is not None and getattr(sender, "app", None) is self.app:
            self.serve()

    def serve(self) -> list[str]:
        """Register a task for each processor implemented in this process.

        Called when this process starts a Celery worker. Unless the worker was
        started with ``-Q``, it then consumes exactly the queues of those
        processors. Returns the names of the processors served.
        """
        queues = self.app.amqp.queues
        served = []
        for name in sorted(_registry):
            if name not in self._served:
                # shared=False: the task belongs to this app, not to every app.
                self.app.task(
                    name=self.task_name(name),
                    ignore_result=True,
                    lazy=False,
                    shared=False,
                )(self._receive)
                self._served.add(name)
            served.append(name)
        if served and not self._user_queues:
            queues.select(sorted({self.queue_of(name) for name in served}))
        if served:
            logger.info(
                "datagraph serves %s on %s (%s)",
                ", ".join(served),
                ", ".join(sorted(queues.consume_from)),
                self.backend,
            )
        return served

    def _receive(self, run_id: str, job: str) -> None:
        """The body of every task: hand the job to this process's event loop."""
        supervisor = self.supervisor
        if supervisor is None:
            msg = f"{self!r} received job {job!r} but serves no Supervisor"
            raise ExecutorError(msg)
        self.host.submit(functools.partial(supervisor.run_processor, run_id, job))

    def _on_process_shutdown(self, **kwargs: Any) -> None:
        self.host.stop()

    def _on_worker_shutdown(self, sender: Any = None, **kwargs: Any) -> None:
        self.host.stop()


def _check_queue(queue: object) -> None:
    if queue is None or callable(queue):
        return
    if isinstance(queue, str):
        if queue:
            return
    elif isinstance(queue, Mapping) and all(
        isinstance(k, str) and isinstance(v, str) and v for k, v in queue.items()
    ):
        return
    msg = (
        "CeleryExecutor queue must be a queue name, a mapping of processor names "
        f"to queue names, or a function of the processor name; got {queue!r}"
    )
    raise ExecutorError(msg)
