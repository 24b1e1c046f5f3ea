"""FastAPI-style dependency injection into processors, and overriding it in tests."""

import threading
from collections.abc import AsyncIterator, Iterator
from typing import Annotated, Any

import anyio
import pytest

from datagraph import (
    IO,
    BlockingIO,
    Depends,
    Flow,
    IOVal,
    LocalExecutor,
    Processor,
    RunFailedError,
    Store,
    Supervisor,
    UpstreamError,
)
from datagraph.testing import run_flow

pytestmark = pytest.mark.anyio

TIMEOUT = 10


async def _run(supervisor: Supervisor, proc: Processor, xs: list[Any]) -> list[Any]:
    """Run a one-processor flow from stream x; return the values of its stream y."""
    flow = Flow.from_processors(proc).resolve()
    outputs = await run_flow(flow, {"x": xs}, supervisor=supervisor, timeout=TIMEOUT)
    return outputs["y"]


# Dependencies (module level: they are the keys overrides refer to).


def get_factor() -> int:
    return 2


def get_base() -> int:
    return 100


def get_offset(base: Annotated[int, Depends(get_base)]) -> int:
    return base + 1


async def get_async_label() -> str:
    await anyio.lowlevel.checkpoint()
    return "async"


async def get_async_nested(
    label: Annotated[str, Depends(get_async_label)],
    offset: Annotated[int, Depends(get_offset)],
) -> str:
    await anyio.lowlevel.checkpoint()
    return f"{label}-{offset}"


class Resource:
    def __init__(self) -> None:
        self.opened = True
        self.closed = False
        self.events: list[str] = []


#: Every Resource handed out by the generator dependencies, to inspect afterwards.
RESOURCES: list[Resource] = []


def get_resource() -> Iterator[Resource]:
    resource = Resource()
    RESOURCES.append(resource)
    try:
        yield resource
    finally:
        resource.closed = True


async def get_async_resource() -> AsyncIterator[Resource]:
    resource = Resource()
    RESOURCES.append(resource)
    try:
        yield resource
    finally:
        await anyio.lowlevel.checkpoint()
        resource.closed = True


CALLS: list[str] = []


def counted() -> int:
    CALLS.append("counted")
    return len(CALLS)


# --------------------------------------------------------------------------------------


async def test_depends_as_default(supervisor: Supervisor) -> None:
    proc = Processor(name="di_default", inputs=["x"], outputs=["y"])

    @proc
    async def impl(x: IO[int], factor: int = Depends(get_factor)) -> AsyncIterator[int]:
        async for v in x.stream():
            yield v * factor

    assert await _run(supervisor, proc, [1, 2]) == [2, 4]


async def test_depends_in_annotated(supervisor: Supervisor) -> None:
    proc = Processor(name="di_annotated", inputs=["x"], outputs=["y"])

    @proc
    async def impl(
        x: IO[int], factor: Annotated[int, Depends(get_factor)]
    ) -> AsyncIterator[int]:
        async for v in x.stream():
            yield v * factor

    assert await _run(supervisor, proc, [3]) == [6]


async def test_nested_and_async_dependencies(supervisor: Supervisor) -> None:
    proc = Processor(name="di_nested_async", inputs=["x"], outputs=["y"])

    @proc
    async def impl(
        x: IO[str],
        offset: Annotated[int, Depends(get_offset)],
        label: Annotated[str, Depends(get_async_nested)],
    ) -> AsyncIterator[str]:
        async for v in x.stream():
            yield f"{v}:{offset}:{label}"

    values = await _run(supervisor, proc, ["a"])
    assert values == ["a:101:async-101"]


async def test_dependencies_of_an_async_function(supervisor: Supervisor) -> None:
    proc = Processor(name="di_async_function", inputs=["x"], outputs=["y"])

    @proc
    async def impl(
        x: IO[int], label: Annotated[str, Depends(get_async_label)]
    ) -> IOVal[str]:
        return IOVal("y", f"{label}{await x.first()}")

    assert await _run(supervisor, proc, [7]) == ["async7"]


async def test_dependencies_of_a_sync_function_in_a_thread(
    supervisor: Supervisor,
) -> None:
    proc = Processor(name="di_sync_function", inputs=["x"], outputs=["y"])
    threads: list[int] = []

    @proc
    def impl(
        x: BlockingIO[int],
        offset: Annotated[int, Depends(get_offset)],
        resource: Annotated[Resource, Depends(get_resource)],
    ) -> Iterator[int]:
        threads.append(threading.get_ident())
        assert not resource.closed
        for v in x.stream():
            yield v + offset

    before = len(RESOURCES)
    assert await _run(supervisor, proc, [1, 2]) == [
        102,
        103,
    ]
    assert threads
    assert threads[0] != threading.get_ident()
    (resource,) = RESOURCES[before:]
    assert resource.closed


async def test_a_dependency_is_resolved_once_per_call(supervisor: Supervisor) -> None:
    proc = Processor(name="di_cached", inputs=["x"], outputs=["y"])

    @proc
    async def impl(
        x: IO[int],
        a: Annotated[int, Depends(counted)],
        b: Annotated[int, Depends(counted)],
    ) -> AsyncIterator[tuple[int, int]]:
        await x.first()
        yield (a, b)

    CALLS.clear()
    values = await _run(supervisor, proc, [0])
    assert values == [[1, 1]]  # msgpack hands tuples back as lists
    assert CALLS == ["counted"]


@pytest.mark.parametrize("dependency", [get_resource, get_async_resource])
async def test_generator_dependency_is_cleaned_up(
    supervisor: Supervisor, dependency: Any
) -> None:
    name = f"di_cleanup_{dependency.__name__}"
    proc = Processor(name=name, inputs=["x"], outputs=["y"])
    seen_open: list[bool] = []

    @proc
    async def impl(
        x: IO[int], resource: Annotated[Resource, Depends(dependency)]
    ) -> AsyncIterator[int]:
        async for v in x.stream():
            seen_open.append(not resource.closed)
            yield v

    before = len(RESOURCES)
    assert await _run(supervisor, proc, [1, 2]) == [1, 2]
    assert seen_open == [True, True]
    (resource,) = RESOURCES[before:]
    assert resource.closed


@pytest.mark.parametrize("dependency", [get_resource, get_async_resource])
async def test_generator_dependency_is_cleaned_up_when_the_processor_raises(
    supervisor: Supervisor, dependency: Any
) -> None:
    name = f"di_cleanup_raise_{dependency.__name__}"
    proc = Processor(name=name, inputs=["x"], outputs=["y"])

    @proc
    async def impl(
        x: IO[int], resource: Annotated[Resource, Depends(dependency)]
    ) -> AsyncIterator[int]:
        async for v in x.stream():
            yield v
        msg = "processor broke"
        raise RuntimeError(msg)

    flow = Flow.from_processors(proc).resolve()
    before = len(RESOURCES)
    with anyio.fail_after(TIMEOUT):
        run = await supervisor.start_flow(flow, inputs=[IOVal("x", 5)])
        with pytest.raises(UpstreamError, match="processor broke"):
            await run["y"].collect()
        with pytest.raises(RunFailedError):
            await run.wait()
    (resource,) = RESOURCES[before:]
    assert resource.closed


async def test_generator_dependency_of_a_sync_function_is_cleaned_up_when_it_raises(
    supervisor: Supervisor,
) -> None:
    proc = Processor(name="di_cleanup_raise_sync", inputs=["x"], outputs=["y"])

    @proc
    def impl(
        x: BlockingIO[int], resource: Annotated[Resource, Depends(get_resource)]
    ) -> Iterator[int]:
        yield x.first()
        msg = "sync processor broke"
        raise RuntimeError(msg)

    flow = Flow.from_processors(proc).resolve()
    before = len(RESOURCES)
    with anyio.fail_after(TIMEOUT):
        run = await supervisor.start_flow(flow, inputs=[IOVal("x", 5)])
        with pytest.raises(UpstreamError, match="sync processor broke"):
            await run["y"].collect()
        with pytest.raises(RunFailedError):
            await run.wait()
    (resource,) = RESOURCES[before:]
    assert resource.closed


# --------------------------------------------------------------------------------------
# Overrides


def _factor_processor(name: str) -> Processor:
    proc = Processor(name=name, inputs=["x"], outputs=["y"])

    @proc
    async def impl(
        x: IO[int], factor: Annotated[int, Depends(get_factor)]
    ) -> AsyncIterator[int]:
        async for v in x.stream():
            yield v * factor

    return proc


async def test_override_within_a_with_block(supervisor: Supervisor) -> None:
    proc = _factor_processor("di_override_with")

    assert await _run(supervisor, proc, [3]) == [6]
    with supervisor.override(get_factor, lambda: 10):
        assert await _run(supervisor, proc, [3]) == [30]
    assert await _run(supervisor, proc, [3]) == [6]


async def test_override_ends_when_the_with_block_raises(supervisor: Supervisor) -> None:
    proc = _factor_processor("di_override_raise")

    def fail_inside_the_block() -> None:
        with supervisor.override(get_factor, lambda: 10):
            msg = "a test failing inside the block"
            raise KeyError(msg)

    with pytest.raises(KeyError):
        fail_inside_the_block()

    # The replacement must not leak into later runs.
    assert await _run(supervisor, proc, [3]) == [6]


async def test_override_through_the_dependency_provider(supervisor: Supervisor) -> None:
    proc = _factor_processor("di_override_provider")

    supervisor.dependency_provider.override(get_factor, lambda: -1)
    try:
        assert await _run(supervisor, proc, [3]) == [-3]
    finally:
        supervisor.dependency_provider.clear()
    assert await _run(supervisor, proc, [3]) == [6]

    supervisor.dependency_provider[get_factor] = lambda: 5
    try:
        assert await _run(supervisor, proc, [3]) == [15]
    finally:
        supervisor.dependency_provider.clear()


async def test_override_of_a_nested_dependency(supervisor: Supervisor) -> None:
    proc = Processor(name="di_override_nested", inputs=["x"], outputs=["y"])

    @proc
    async def impl(
        x: IO[int], offset: Annotated[int, Depends(get_offset)]
    ) -> AsyncIterator[int]:
        async for v in x.stream():
            yield v + offset

    with supervisor.override(get_base, lambda: 1000):
        assert await _run(supervisor, proc, [1]) == [1002]
    assert await _run(supervisor, proc, [1]) == [102]


async def test_override_with_an_async_replacement(supervisor: Supervisor) -> None:
    proc = _factor_processor("di_override_async")

    async def async_factor() -> int:
        await anyio.lowlevel.checkpoint()
        return 4

    with supervisor.override(get_factor, async_factor):
        assert await _run(supervisor, proc, [3]) == [12]


async def test_overrides_belong_to_one_supervisor(store: Store) -> None:
    proc = _factor_processor("di_override_scope")
    overridden = Supervisor(store=store, executor=LocalExecutor())
    plain = Supervisor(store=store, executor=LocalExecutor())

    with overridden.override(get_factor, lambda: 10):
        assert await _run(overridden, proc, [3]) == [30]
        assert await _run(plain, proc, [3]) == [6]
