"""The contract between a supervisor and whatever runs its processors."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING

from ..exceptions import ExecutorError
from ..stores.memory import MemoryStore

if TYPE_CHECKING:
    from .._plan import Plan
    from ..supervisor import Supervisor

__all__ = ("Executor",)


class Executor(ABC):
    """Runs "job J of run R" somewhere: this process, a Celery worker, ...

    ``dispatch`` is the whole contract: the process that picks the job up calls
    ``Supervisor.run_processor(run_id, job)``, which loads the run's plan from the
    store and does the rest. A job is a processor's name, or ``name#i`` for
    instance ``i`` of a scaled-out processor.
    """

    #: Whether a job dispatched again from any process reaches a worker that can
    #: run it. Then a peer that sees a processor's lease expire dispatches it
    #: again (a takeover); otherwise the processor is reported lost.
    takes_over: bool = False

    _supervisor: Supervisor | None = None

    @property
    def supervisor(self) -> Supervisor | None:
        """The supervisor this executor runs processors for (once bound)."""
        return self._supervisor

    def bind(self, supervisor: Supervisor) -> None:
        """Attach the supervisor whose processors this executor runs.

        Raises:
            ExecutorError: the executor already serves another supervisor (an
                executor object belongs to one supervisor; create one for each),
                or it runs processors in other processes and the supervisor
                keeps its runs in a ``MemoryStore``, which they cannot see.
        """
        if self.takes_over and isinstance(supervisor.store, MemoryStore):
            name = type(self).__name__
            msg = (
                f"{name} runs processors in other processes, which cannot see this "
                "process's MemoryStore; attach a shared store, e.g. "
                "Supervisor.attach(redis_config={'url': 'redis://...'}, "
                f"executor={name}(...))"
            )
            raise ExecutorError(msg)
        if self._supervisor is not None and self._supervisor is not supervisor:
            msg = (
                f"{self!r} already serves {self._supervisor!r}; give each "
                "Supervisor an executor object of its own"
            )
            raise ExecutorError(msg)
        self._supervisor = supervisor

    @abstractmethod
    async def dispatch(self, run_id: str, job: str) -> None:
        """Arrange for job ``job`` of run ``run_id`` to run."""

    def where(self, job: str) -> str:
        """Say where ``job`` goes, for people watching a run wait for it."""
        return "this process"

    def check(self, plan: Plan) -> None:
        """Raise before a run starts if this executor cannot run the plan."""
        return
