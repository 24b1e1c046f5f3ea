"""``datagraph.testing``: running a flow in one call, as a user's tests do."""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Annotated

import anyio
import pytest

from datagraph import (
    IO,
    Depends,
    Flow,
    IOVal,
    Processor,
    RunFailedError,
    Store,
    Supervisor,
)
from datagraph.testing import run_flow, run_flow_sync
from datagraph.testing.conformance import StoreContract


def get_factor() -> int:
    return 2


scale = Processor(name="testing-scale", inputs=["numbers"], outputs=["scaled"])


@scale
async def _scale(
    numbers: IO[int], factor: Annotated[int, Depends(get_factor)]
) -> AsyncIterator[int]:
    async for n in numbers.stream():
        yield n * factor


split = Processor(name="testing-split", inputs=["scaled"], outputs=["small", "big"])


@split
async def _split(scaled: IO[int]) -> AsyncIterator[IOVal[int]]:
    async for n in scaled.stream():
        yield IOVal("small" if n < 10 else "big", n)


fail = Processor(name="testing-fail", inputs=["numbers"], outputs=["never"])


@fail
async def _fail(numbers: IO[int]) -> AsyncIterator[int]:
    async for n in numbers.stream():
        if n == 3:
            raise ValueError("three is not welcome")
        yield n


hang = Processor(name="testing-hang", inputs=["numbers"], outputs=["late"])


@hang
async def _hang(numbers: IO[int]) -> AsyncIterator[int]:
    await anyio.sleep_forever()
    yield 0  # pragma: no cover  # makes it a generator


FLOW = Flow.from_processors(scale, split).resolve()


@pytest.mark.anyio
async def test_run_flow_returns_the_values_of_each_output() -> None:
    outputs = await run_flow(FLOW, inputs={"numbers": [1, 2, 5, 7]})
    assert outputs == {"small": [2, 4], "big": [10, 14]}


@pytest.mark.anyio
async def test_overrides_replace_dependencies() -> None:
    outputs = await run_flow(
        FLOW, inputs={"numbers": [1, 2]}, overrides={get_factor: lambda: 10}
    )
    assert outputs == {"small": [], "big": [10, 20]}


@pytest.mark.anyio
async def test_all_outputs_collects_every_stream() -> None:
    outputs = await run_flow(FLOW, inputs={"numbers": [3]}, all_outputs=True)
    assert outputs == {"numbers": [3], "scaled": [6], "small": [6], "big": []}


@pytest.mark.anyio
async def test_a_failed_processor_raises_the_run_failure() -> None:
    flow = Flow.from_processors(fail).resolve()
    with pytest.raises(RunFailedError) as info:
        await run_flow(flow, inputs={"numbers": [1, 2, 3]})
    (error,) = info.value.errors.values()
    assert error.processor == "testing-fail"
    assert error.error_type == "ValueError"
    assert "three is not welcome" in error.message
    assert "test_testing.py" in error.traceback  # the user's file and line


@pytest.mark.anyio
async def test_a_run_that_hangs_fails_after_the_timeout() -> None:
    flow = Flow.from_processors(hang).resolve()
    with pytest.raises(TimeoutError):
        await run_flow(flow, inputs={"numbers": [1]}, timeout=0.2)


@pytest.mark.anyio
async def test_settings_reach_the_run() -> None:
    outputs = await run_flow(FLOW, inputs={"numbers": range(50)}, batch_size=4)
    assert outputs["small"] == [0, 2, 4, 6, 8]
    assert outputs["big"] == list(range(10, 100, 2))


@pytest.mark.anyio
async def test_a_supervisor_of_the_tests_runs_it_on_its_store(
    supervisor: Supervisor, store: Store
) -> None:
    outputs = await run_flow(
        FLOW,
        {"numbers": [1, 6]},
        overrides={get_factor: lambda: 3},
        supervisor=supervisor,
    )
    assert outputs == {"small": [3], "big": [18]}
    (run_id,) = await store.list_runs()  # on the test's store (memory or Redis)
    assert await supervisor.store.get_fields(run_id)  # still open
    with pytest.raises(TypeError, match=r"settings \['batch_size'\] given with"):
        await run_flow(FLOW, {"numbers": [1]}, supervisor=supervisor, batch_size=2)
    assert supervisor.dependency_provider.overrides == {}  # back as it was


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_run_flow_sync_runs_on_the_loop_asked_for(backend: str) -> None:
    outputs = run_flow_sync(FLOW, {"numbers": [4, 6]}, backend=backend)
    assert outputs == {"small": [8], "big": [12]}


def test_the_kit_imports_without_pytest() -> None:
    # A user's production environment has no pytest: only the conformance
    # suite needs it.
    code = (
        "import sys; sys.modules['pytest'] = None\n"
        "import datagraph.testing\n"
        "try:\n"
        "    import datagraph.testing.conformance\n"
        "except ImportError:\n"
        "    print('conformance needs pytest')\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout == "conformance needs pytest\n"


def test_the_public_names() -> None:
    import datagraph.testing
    import datagraph.testing.conformance

    assert datagraph.testing.__all__ == ["run_flow", "run_flow_sync"]
    assert datagraph.testing.conformance.__all__ == ["StoreContract"]


def test_a_store_author_runs_the_contract_in_a_few_lines(tmp_path: Path) -> None:
    # The README's recipe, in a project of the author's own: every contract test
    # is collected for their store, on both loops, and passes.
    (tmp_path / "test_my_store.py").write_text(
        textwrap.dedent(
            """
            import pytest
            from datagraph.stores.memory import MemoryStore
            from datagraph.testing.conformance import StoreContract

            class MyStore(MemoryStore):
                pass

            class TestMyStore(StoreContract):
                @pytest.fixture
                def store_factory(self):
                    shared = MyStore()  # its data is in the object
                    return lambda: shared
            """
        )
    )
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    contract = [n for n in dir(StoreContract) if n.startswith("test_")]
    assert len(contract) > 50
    passed = re.search(r"(\d+) passed", result.stdout)
    assert passed, result.stdout
    assert int(passed.group(1)) >= 2 * len(contract)  # each on asyncio and trio
