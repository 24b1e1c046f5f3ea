"""Each executor on its own: binding, takeover, where jobs go, what it refuses.

Running flows on real workers is in ``test_celery.py``, ``test_dramatiq.py`` and
``test_liveness.py``; routing of each engine's queues is tested there too.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator

import anyio
import pytest
from celery import Celery
from dramatiq.brokers.stub import StubBroker

from datagraph import IO, Flow, IOVal, LocalExecutor, Processor, Supervisor
from datagraph.exceptions import ExecutorError, ProcessorNotFoundError
from datagraph.executors import CeleryExecutor, DramatiqExecutor, Executor
from datagraph.stores.memory import MemoryStore
from datagraph.stores.redis import RedisStore


@pytest.fixture
def celery_app() -> Iterator[Celery]:
    app = Celery("dgtest-executors", broker="memory://", set_as_current=False)
    yield app
    app.close()


def _shared_store() -> RedisStore:
    # Never reached: binding looks at the kind of store, not at the server.
    return RedisStore("redis://127.0.0.1:1/0")


@pytest.fixture(params=["local", "celery", "dramatiq"])
def make_executor(
    request: pytest.FixtureRequest, celery_app: Celery
) -> Callable[[], Executor]:
    kinds: dict[str, Callable[[], Executor]] = {
        "local": LocalExecutor,
        "celery": lambda: CeleryExecutor(celery_app),
        "dramatiq": lambda: DramatiqExecutor(StubBroker()),
    }
    return kinds[request.param]


def test_only_executors_of_other_processes_take_over(
    make_executor: Callable[[], Executor],
) -> None:
    executor = make_executor()
    # A job dispatched again reaches a worker only through a shared queue.
    assert executor.takes_over is not isinstance(executor, LocalExecutor)


def test_binding_makes_the_supervisor_the_executors(
    make_executor: Callable[[], Executor],
) -> None:
    executor = make_executor()
    unbound = executor.supervisor
    supervisor = Supervisor(store=_shared_store(), executor=executor)
    assert unbound is None
    assert executor.supervisor is supervisor
    executor.bind(supervisor)  # the same one again: nothing changes
    assert executor.supervisor is supervisor


def test_an_executor_refuses_a_second_supervisor(
    make_executor: Callable[[], Executor],
) -> None:
    executor = make_executor()
    first = Supervisor(store=_shared_store(), executor=executor)
    with pytest.raises(ExecutorError, match="already serves") as info:
        Supervisor(store=_shared_store(), executor=executor)
    assert "executor object of its own" in str(info.value)
    assert executor.supervisor is first


def test_a_memory_store_is_refused_where_processors_run_elsewhere(
    make_executor: Callable[[], Executor],
) -> None:
    executor = make_executor()
    if not executor.takes_over:
        Supervisor(store=MemoryStore(), executor=executor)  # this process: fine
        return
    with pytest.raises(ExecutorError, match="cannot see this process's MemoryStore"):
        Supervisor(store=MemoryStore(), executor=executor)
    assert executor.supervisor is None  # refused before binding


def test_where_names_the_queue_of_a_job(make_executor: Callable[[], Executor]) -> None:
    executor = make_executor()
    expected = {
        LocalExecutor: "this process",
        CeleryExecutor: "celery queue 'datagraph.parse'",
        DramatiqExecutor: "dramatiq queue 'datagraph.parse'",
    }[type(executor)]
    assert executor.where("parse") == expected
    assert executor.where("parse#2") == expected  # every instance goes there


# ------------------------------------------------------------ LocalExecutor
ex_numbers = Processor(name="ex_numbers", inputs=["ex_n"], outputs=["ex_values"])


@ex_numbers
async def _ex_numbers(ex_n: IO[int]) -> AsyncIterator[int]:
    for i in range(await ex_n.first()):
        yield i


def test_the_local_executor_needs_every_implementation_here() -> None:
    elsewhere = Processor(name="ex_elsewhere", inputs=["ex_values"], outputs=["ex_o"])
    flow = Flow.from_processors(ex_numbers, elsewhere).resolve()
    with pytest.raises(ProcessorNotFoundError, match=r"\['ex_elsewhere'\]"):
        LocalExecutor().check(flow.plan)
    LocalExecutor().check(Flow.from_processors(ex_numbers).resolve().plan)


@pytest.mark.anyio
async def test_an_unbound_local_executor_cannot_dispatch() -> None:
    with pytest.raises(ExecutorError, match="not bound to a Supervisor"):
        await LocalExecutor().dispatch("run", "ex_numbers")


@pytest.mark.anyio
async def test_the_local_executor_runs_past_start_flow_on_this_loop() -> None:
    # No task group of the caller's: the run goes on after start_flow returns.
    supervisor = Supervisor(store=MemoryStore(), executor=LocalExecutor())
    flow = Flow.from_processors(ex_numbers).resolve()
    with anyio.fail_after(10):
        run = await supervisor.start_flow(flow, [IOVal("ex_n", 5)])
        await run.wait()
    assert await run["ex_values"].collect() == [0, 1, 2, 3, 4]
