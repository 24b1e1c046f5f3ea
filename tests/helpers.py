"""Small helpers shared by the test modules."""

import os
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest

from datagraph import IO, Flow, IOVal, Processor, Run, Supervisor, UpstreamError
from datagraph.testing import run_flow

#: The seed's example, which every kind of server must run as it is.
SEED = Path(__file__).resolve().parents[1] / "examples" / "seed.py"


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


def run_seed_example(redis_url: str, prefix: str) -> None:
    """Run ``examples/seed.py`` on the server at ``redis_url``, as a user would.

    It gets the URL and key prefix from the environment, and no other
    ``DATAGRAPH_*`` setting of the test run; it must print the seed's output.
    """
    clean = {k: v for k, v in os.environ.items() if not k.startswith("DATAGRAPH_")}
    env = {**clean, "DATAGRAPH_REDIS_URL": redis_url, "DATAGRAPH_PREFIX": prefix}
    proc = subprocess.run(
        [sys.executable, str(SEED)],
        env=env,
        capture_output=True,
        text=True,
        timeout=50,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["0", "2", "4", "6", "8"] * 2  # trio, then asyncio


async def read_until_failure(io: IO[Any]) -> tuple[list[Any], UpstreamError]:
    """Read a stream that must end with a failure: its values, and the failure."""
    values: list[Any] = []
    try:
        async for value in io.stream():
            values.append(value)  # noqa: PERF401 - keep the values read before it
    except UpstreamError as exc:
        return values, exc
    pytest.fail(f"stream {io.name!r} ended without an UpstreamError: {values!r}")
