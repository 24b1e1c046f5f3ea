"""Small helpers shared by the test modules."""

from collections.abc import Iterable
from typing import Any

from datagraph import Flow, IOVal, Processor, Run, Supervisor
from datagraph.testing import run_flow


async def start(
    supervisor: Supervisor,
    *processors: Processor,
    inputs: list[IOVal[Any]] | None = None,
    all_outputs: bool = False,
) -> Run:
    """Resolve a flow of ``processors`` and start a run of it."""
    flow = Flow.from_processors(*processors).resolve()
    return await supervisor.start_flow(
        flow, inputs=inputs or [], all_outputs=all_outputs
    )


async def run_processors(
    supervisor: Supervisor, *processors: Processor, **inputs: Iterable[Any]
) -> dict[str, list[Any]]:
    """Run a flow of ``processors`` to its end; return the values of its outputs."""
    flow = Flow.from_processors(*processors).resolve()
    return await run_flow(flow, inputs, supervisor=supervisor, timeout=10)
