"""Small helpers shared by the test modules."""

from typing import Any

from datagraph import Flow, IOVal, Processor, Run, Supervisor


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
