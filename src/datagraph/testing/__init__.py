"""Testing flows, and testing stores.

``run_flow`` feeds a flow's inputs and collects its outputs in one call, on a
fresh ``MemoryStore`` (or a supervisor of the test's), with dependency overrides;
``run_flow_sync`` does it from a test that is not async. The store conformance
suite for store authors is in ``datagraph.testing.conformance`` (it needs pytest:
``datagraph[testing]``).
"""

from __future__ import annotations

import contextlib
import functools
from typing import TYPE_CHECKING, Any

import anyio

from datagraph.executors import LocalExecutor
from datagraph.io import IOVal
from datagraph.stores.memory import MemoryStore
from datagraph.supervisor import Supervisor

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Mapping

    from datagraph.flow import Flow

__all__ = ["run_flow", "run_flow_sync"]


async def run_flow(
    flow: Flow,
    inputs: Mapping[str, Iterable[Any]] | None = None,
    *,
    overrides: Mapping[Callable[..., Any], Callable[..., Any]] | None = None,
    all_outputs: bool = False,
    timeout: float | None = 30,
    supervisor: Supervisor | None = None,
    **settings: Any,
) -> dict[str, list[Any]]:
    """Run a resolved flow to its end on a new ``MemoryStore`` and collect its outputs.

    The processors run in this process (``LocalExecutor``), on the calling event
    loop; values are encoded and decoded as in production (``MsgpackSerializer``).
    Pass ``supervisor`` to run the flow on its store and executor instead.

    Args:
        flow: a resolved flow.
        inputs: the values of each flow input, by stream name, in order.
        overrides: replacements of dependencies, as ``Supervisor.override`` takes
            them: ``{get_db: lambda: fake_db}``.
        all_outputs: collect every stream of the run, not just the flow's outputs.
        timeout: seconds the whole run may take (None: no limit); a test of a flow
            that hangs then fails instead of hanging too.
        supervisor: run on this supervisor (which stays open) instead of a new
            one on a ``MemoryStore``.
        **settings: settings of the new supervisor, e.g. ``batch_size=4`` (not
            with ``supervisor``: it has its settings).

    Returns:
        The values of each output stream (each stream with ``all_outputs=True``).

    Raises:
        RunFailedError: a processor failed; ``.errors`` holds each failure as an
            ``UpstreamError`` (with the processor's traceback).
        TimeoutError: the run took longer than ``timeout``.
        DatagraphError: the flow cannot start (unresolved, a missing input...).
        TypeError: settings given with ``supervisor``.
    """
    values = [
        IOVal(name, value) for name, items in (inputs or {}).items() for value in items
    ]
    async with contextlib.AsyncExitStack() as stack:
        if supervisor is None:
            supervisor = await stack.enter_async_context(
                Supervisor(store=MemoryStore(), executor=LocalExecutor(), **settings)
            )
        elif settings:
            msg = f"settings {sorted(settings)} given with a supervisor of its own"
            raise TypeError(msg)
        for dependency, replacement in (overrides or {}).items():
            stack.enter_context(supervisor.override(dependency, replacement))
        with anyio.fail_after(timeout):
            run = await supervisor.start_flow(flow, values, all_outputs=all_outputs)
            await run.wait()
            return {name: await io.collect() for name, io in run.items()}


def run_flow_sync(
    flow: Flow,
    inputs: Mapping[str, Iterable[Any]] | None = None,
    *,
    backend: str = "asyncio",
    **options: Any,
) -> dict[str, list[Any]]:
    """``run_flow`` from synchronous code, on a new event loop of ``backend``.

    Args:
        flow: a resolved flow.
        inputs: the values of each flow input, by stream name, in order.
        backend: ``"asyncio"`` or ``"trio"``.
        **options: the keyword arguments of ``run_flow``.
    """
    return anyio.run(
        functools.partial(run_flow, flow, inputs, **options), backend=backend
    )
