"""Running processors as tasks of this process's event loop."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .. import _background
from ..exceptions import ExecutorError, ProcessorNotFoundError
from ..processor import _registry
from ._base import Executor

if TYPE_CHECKING:
    from .._plan import Plan

__all__ = ("LocalExecutor",)


class LocalExecutor(Executor):
    """Run every processor as a task in this process (the default executor).

    Each dispatched processor becomes a task of the running event loop, so a run
    needs no task group of the caller's and keeps going after ``start_flow``
    returns, for as long as the event loop runs.
    """

    def __repr__(self) -> str:
        return "LocalExecutor()"

    def check(self, plan: Plan) -> None:
        """Make sure every processor of the plan is implemented in this process.

        Raises:
            ProcessorNotFoundError: naming every processor without one.
        """
        missing = [
            p.name
            for p in plan.processors
            if (impl := _registry.get(p.name)) is None or impl.processor != p
        ]
        if missing:
            msg = (
                f"LocalExecutor runs processors in this process, but no "
                f"implementation is registered here for {missing}; import the "
                "modules that implement them"
            )
            raise ProcessorNotFoundError(msg)

    async def dispatch(self, run_id: str, processor: str) -> None:
        """Start processor ``processor`` of run ``run_id`` as a background task."""
        supervisor = self.supervisor
        if supervisor is None:
            msg = "LocalExecutor is not bound to a Supervisor"
            raise ExecutorError(msg)

        async def run() -> None:
            await supervisor.run_processor(run_id, processor)

        _background.spawn(run)
