"""The contract between a supervisor and whatever runs its processors."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .._plan import Plan
    from ..supervisor import Supervisor

__all__ = ("Executor",)


class Executor(ABC):
    """Runs "processor P of run R" somewhere: this process, a Celery worker, ...

    ``dispatch`` is the whole contract: the process that picks the job up calls
    ``Supervisor.run_processor(run_id, name)``, which loads the run's plan from the
    store and does the rest.
    """

    supervisor: Supervisor | None = None

    def bind(self, supervisor: Supervisor) -> None:
        """Attach the supervisor whose processors this executor runs."""
        self.supervisor = supervisor

    @abstractmethod
    async def dispatch(self, run_id: str, processor: str) -> None:
        """Arrange for processor ``processor`` of run ``run_id`` to run."""

    def check(self, plan: Plan) -> None:
        """Raise before a run starts if this executor cannot run the plan."""
        return
