"""Running processors in Dramatiq workers: ``dramatiq <service module>``.

The starter sends a message to the actor named after the processor
(``datagraph.<processor>``), on the processor's queue; it needs no actor and no
implementation of its own. A worker declares one actor per processor implemented
in its process when it boots, so ``dramatiq svc`` consumes exactly the queues of
what ``svc`` implements. Each actor only hands ``Supervisor.run_processor`` to
the process's ``WorkerHost`` and returns: the message is acknowledged at once and
a streaming processor never holds one of Dramatiq's worker threads. A processor
whose worker dies is recovered from its lease in the store (``takes_over``), not
by Dramatiq redelivering the message.
"""

from __future__ import annotations

import functools
import re
from typing import TYPE_CHECKING, Any

import anyio.to_thread

from ..exceptions import ExecutorError
from ..processor import _registry
from ._base import Executor
from ._host import WorkerHost, worker_backend

try:
    import dramatiq
    from dramatiq.middleware import Middleware
except ImportError as exc:  # an optional extra: say how to get it
    msg = (
        f"DramatiqExecutor needs Dramatiq ({exc}); install it with "
        "pip install 'datagraph[dramatiq]'"
    )
    raise ImportError(msg) from exc

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping
    from typing import TypeAlias

    from .._plan import Plan

    #: Where processors' messages go: see ``DramatiqExecutor``'s ``queue``.
    Routing: TypeAlias = str | Mapping[str, str] | Callable[[str], str | None] | None

__all__ = ("DramatiqExecutor", "actor_name", "default_queue")

#: Prefix of the actor (and default queue) of every processor.
PREFIX = "datagraph."
#: Environment variable that picks the workers' event loop when ``backend`` is
#: not given.
#: Longest a shutting-down worker waits for its threads to pause (seconds).
_PAUSE_TIMEOUT = 10.0
# Dramatiq's own rule for queue names (dramatiq.actor._queue_name_re).
_QUEUE_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9._-]*")


def actor_name(processor: str) -> str:
    """Return the name of the actor that runs ``processor``."""
    return PREFIX + processor


def default_queue(processor: str) -> str:
    """Return the queue a processor's messages go to unless routed elsewhere."""
    return PREFIX + processor


class DramatiqExecutor(Executor):
    """Run processors in Dramatiq workers, one actor per processor.

    Every service creates one with its broker and attaches it::

        broker = RedisBroker(url="redis://localhost:6379/1")
        dramatiq.set_broker(broker)
        Supervisor.attach(
            redis_config={"url": "redis://localhost:6379/0"},
            executor=DramatiqExecutor(broker),
        )

    and a service that implements processors serves them with Dramatiq's own
    command, ``dramatiq svc`` (``--processes`` and ``--threads`` as usual: every
    worker process runs any number of processors on one event loop).

    Args:
        broker: the Dramatiq broker (Redis or RabbitMQ) messages go through.
        queue: where a processor's messages go. ``None``: a queue per processor,
            ``datagraph.<processor>``. A string: that queue for every processor.
            A mapping ``{processor: queue}``: those processors there, the others
            on their own queue. A callable ``f(processor) -> queue | None``:
            ``None`` falls back to the processor's own queue.
        backend: the workers' event loop, ``"asyncio"`` or ``"trio"``; default
            ``$DATAGRAPH_WORKER_BACKEND``, else ``"asyncio"``.

    Raises:
        ImportError: Dramatiq is not installed.
        ExecutorError: ``backend`` names no event loop.
    """

    takes_over = True

    def __init__(
        self,
        broker: dramatiq.Broker,
        *,
        queue: Routing = None,
        backend: str | None = None,
    ) -> None:
        backend = worker_backend("DramatiqExecutor", backend)
        self.broker = broker
        self.backend = backend
        self._routing = queue
        self.host = WorkerHost(backend)
        broker.add_middleware(_Serving(self))

    def __repr__(self) -> str:
        return f"DramatiqExecutor({self.broker!r}, backend={self.backend!r})"

    def queue_of(self, processor: str) -> str:
        """Return the queue that runs ``processor`` (see ``queue`` above)."""
        routing = self._routing
        if routing is None:
            return default_queue(processor)
        if isinstance(routing, str):
            return routing
        if callable(routing):
            return routing(processor) or default_queue(processor)
        return routing.get(processor) or default_queue(processor)

    def where(self, job: str) -> str:
        """Name the queue a job's message waits in."""
        return f"dramatiq queue {self.queue_of(job.partition('#')[0])!r}"

    def check(self, plan: Plan) -> None:
        """Make sure every processor of the plan routes to a valid queue name.

        Raises:
            ExecutorError: naming the processor and the queue Dramatiq refuses.
        """
        for proc in plan.processors:
            self._checked_queue(proc.name)

    def _checked_queue(self, processor: str) -> str:
        queue = self.queue_of(processor)
        returned: object = queue  # a user's callable may return anything
        if not (isinstance(returned, str) and _QUEUE_NAME.fullmatch(returned)):
            msg = (
                f"processor {processor!r} routes to Dramatiq queue {queue!r}, which "
                "Dramatiq refuses: a queue name starts with a letter or '_' and "
                "holds only letters, digits, '.', '_' and '-'; route it with "
                f"DramatiqExecutor(broker, queue={{{processor!r}: 'some_queue'}})"
            )
            raise ExecutorError(msg)
        return queue

    async def dispatch(self, run_id: str, job: str) -> None:
        """Send job ``job`` of run ``run_id`` to its processor's actor.

        Only the actor's name and queue are needed: the sending process declares
        no actor. Sending is blocking I/O on the broker, so it runs in a thread.

        Raises:
            ExecutorError: the broker did not take the message.
        """
        processor = job.partition("#")[0]
        message: dramatiq.Message[None] = dramatiq.Message(
            queue_name=self._checked_queue(processor),
            actor_name=actor_name(processor),
            args=(run_id, job),
            kwargs={},
            options={},
        )
        try:
            await anyio.to_thread.run_sync(self.broker.enqueue, message)
        except Exception as exc:  # the broker's own errors, whatever the broker
            msg = (
                f"could not send job {job!r} of run {run_id} to Dramatiq "
                f"({self.where(job)}): {type(exc).__name__}: {exc}"
            )
            raise ExecutorError(msg) from exc

    def serve(self) -> list[str]:
        """Declare an actor for each processor implemented in this process.

        Called when a Dramatiq worker boots (so after the service module and
        any modules named on the command line are imported); returns the names
        of the actors declared.
        """
        options = (
            {"max_retries": 0} if "max_retries" in self.broker.actor_options else {}
        )
        declared = []
        for name in sorted(_registry):
            if actor_name(name) in self.broker.actors:
                continue
            dramatiq.Actor(
                self._actor_body(name),
                broker=self.broker,
                actor_name=actor_name(name),
                queue_name=self._checked_queue(name),
                priority=0,
                options=dict(options),
            )
            declared.append(actor_name(name))
        return declared

    def _actor_body(self, processor: str) -> Callable[[str, str], None]:
        def run(run_id: str, job: str) -> None:
            self._run(processor, run_id, job)

        run.__name__ = run.__qualname__ = actor_name(processor)
        return run

    def _run(self, processor: str, run_id: str, job: str) -> None:
        """Hand a job to the host and return (the body of every actor)."""
        supervisor = self.supervisor
        if supervisor is None:
            msg = (
                f"{self!r} received job {job!r} of run {run_id} but serves no "
                "Supervisor; attach one in the service module: "
                "Supervisor.attach(redis_config=..., executor=executor)"
            )
            raise ExecutorError(msg)
        if job.partition("#")[0] != processor:
            msg = f"actor {actor_name(processor)!r} received a job of {job!r}"
            raise ExecutorError(msg)
        self.host.submit(functools.partial(supervisor.run_processor, run_id, job))


class _Serving(Middleware):
    """Declare the actors when a worker boots; stop the host when it shuts down."""

    def __init__(self, executor: DramatiqExecutor) -> None:
        self.executor = executor

    def before_worker_boot(self, broker: dramatiq.Broker, worker: Any) -> None:
        self.executor.serve()

    def before_worker_shutdown(
        self, broker: dramatiq.Broker, worker: dramatiq.Worker
    ) -> None:
        # The processors stopped here dispatch their jobs again, for the next
        # worker on their queues: pause this worker's threads first, or they
        # would take the jobs straight back (its consumers requeue what they
        # fetch meanwhile when they stop).
        threads = list(worker.workers)
        for thread in threads:
            thread.pause()
        for thread in threads:
            thread.paused_event.wait(_PAUSE_TIMEOUT)
        self.executor.host.stop()
