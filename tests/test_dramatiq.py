"""DramatiqExecutor with real ``dramatiq`` worker processes on the test Redis.

Two services (tests/dramatiq_services) each import the shared declarations and
implement their own processors; each is served by its own ``dramatiq <module>``
command, whose event loop is the test's (asyncio or trio). The test process
starts runs and reads results, implementing nothing.
"""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from contextlib import aclosing
from typing import TYPE_CHECKING

import anyio
import pytest
from dramatiq.brokers.stub import StubBroker

from _dramatiq_workers import dramatiq_workers, worker_env
from _redis_servers import free_port
from _worker_processes import ROOT
from datagraph import (
    Flow,
    IOVal,
    Processor,
    RunCancelledError,
    RunFailedError,
    Supervisor,
)
from datagraph.exceptions import DatagraphError, ExecutorError
from datagraph.executors import DramatiqExecutor
from datagraph.executors.dramatiq import actor_name
from datagraph.processor import _registry
from dramatiq_services import shared

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable, Iterator
    from contextlib import ExitStack

    from _dramatiq_workers import DramatiqWorker
    from datagraph._plan import JobRecord

SERVICES = ["tests.dramatiq_services.numbers", "tests.dramatiq_services.doubling"]
TIMEOUT = 30


class Services:
    """Both services served by workers on one event loop, under one prefix."""

    def __init__(self, redis_url: str, backend: str, stack: ExitStack) -> None:
        self.redis_url = redis_url
        self.prefix = f"dgtest-dq-{backend}-{uuid.uuid4().hex[:8]}"
        env = worker_env(
            DG_TEST_REDIS_URL=redis_url,
            DG_TEST_PREFIX=self.prefix,
            DATAGRAPH_WORKER_BACKEND=backend,
            # Idle workers poll every 0.1 s (1 s by default): faster pick-ups and
            # shutdowns, nothing else.
            dramatiq_worker_timeout="100",
        )
        self.workers: list[DramatiqWorker] = stack.enter_context(
            dramatiq_workers(SERVICES, env, processes=1, threads=2)
        )

    def log(self) -> str:
        return "\n".join(f"--- {w}\n{w.log.text()}" for w in self.workers)


class ServicePool:
    """Workers per event loop, started on first use and shared by the module."""

    def __init__(self, redis_url: str, stack: ExitStack) -> None:
        self.redis_url = redis_url
        self._stack = stack
        self._by_backend: dict[str, Services] = {}

    def get(self, backend: str) -> Services:
        if backend not in self._by_backend:
            self._by_backend[backend] = Services(self.redis_url, backend, self._stack)
        return self._by_backend[backend]


@pytest.fixture(scope="module")
def service_pool(redis_url: str) -> Iterator[ServicePool]:
    from contextlib import ExitStack

    with ExitStack() as stack:
        yield ServicePool(redis_url, stack)


@pytest.fixture
def services(service_pool: ServicePool, anyio_backend: str) -> Services:
    return service_pool.get(anyio_backend)


@pytest.fixture
async def starter(services: Services) -> AsyncIterator[Supervisor]:
    """The test process: starts runs and reads results, implements nothing."""
    broker = shared.broker(services.redis_url, services.prefix)
    supervisor = Supervisor(
        redis_config={"url": services.redis_url, "prefix": services.prefix},
        executor=DramatiqExecutor(broker),
    )
    yield supervisor
    for run in await supervisor.list_runs():
        await supervisor.delete_run(run.id)
    await supervisor.aclose()
    broker.close()


@pytest.mark.anyio
@pytest.mark.redis
async def test_a_flow_runs_across_two_dramatiq_services(
    starter: Supervisor, services: Services
) -> None:
    assert not any(name.startswith("dq_") for name in _registry)  # implements none
    n = 2000
    with anyio.fail_after(TIMEOUT):
        run = await starter.start_flow(shared.FLOW, inputs=[IOVal("dq_n", n)])
        values = [v async for v in run["dq_out"].stream()]
        await run.wait()
    assert values == [2 * i + 1 for i in range(n)], services.log()
    assert await run.status() == "succeeded"
    states = await run.states()
    assert {name: s.status for name, s in states.items()} == {
        "dq_source": "done",
        "dq_double": "done",
        "dq_increment": "done",
    }


@pytest.mark.anyio
@pytest.mark.redis
async def test_a_processor_no_service_implements_waits_visibly_then_fails(
    services: Services,
) -> None:
    broker = shared.broker(services.redis_url, services.prefix)
    starter = Supervisor(
        redis_config={"url": services.redis_url, "prefix": services.prefix},
        executor=DramatiqExecutor(broker),
        dispatch_timeout=1.5,
    )
    with anyio.fail_after(TIMEOUT):
        run = await starter.start_flow(shared.ORPHANED, inputs=[IOVal("dq_n", 3)])
        waiting = (await run.states())["dq_orphan"]
        assert waiting.status == "pending"
        assert waiting.where == "dramatiq queue 'datagraph.dq_orphan'"
        with pytest.raises(RunFailedError) as caught:
            await run.wait()
    error = caught.value.errors["dq_orphan"]
    assert error.error_type == "DispatchTimeout"
    assert "datagraph.dq_orphan" in error.message
    assert list(caught.value.errors) == ["dq_orphan"]  # dq_source ran on its worker
    await starter.delete_run(run.id)
    await starter.aclose()
    broker.close()


@pytest.mark.anyio
@pytest.mark.redis
async def test_twelve_processors_stream_at_once_on_a_worker_of_two_threads(
    starter: Supervisor, services: Services
) -> None:
    n = 500
    with anyio.fail_after(TIMEOUT):
        run = await starter.start_flow(shared.FAN_OUT, inputs=[IOVal("dq_fan_n", n)])
        await run.wait()
        outputs = {
            name: await run[name].collect() for name in shared.FAN_OUT.plan.outputs
        }
    assert len(shared.FAN_OUT.plan.processors) == 12
    assert outputs == {
        f"dq_fan_out{i}": [x + i for x in range(n)] for i in range(shared.FAN)
    }, services.log()


@pytest.mark.anyio
@pytest.mark.redis
async def test_cancel_stops_a_processor_on_a_dramatiq_worker_within_2_s(
    starter: Supervisor, services: Services
) -> None:
    with anyio.fail_after(TIMEOUT):
        run = await starter.start_flow(shared.ENDLESS, inputs=[IOVal("dq_seed", 7)])
        ticks = run["dq_ticks"].stream()
        assert [await anext(ticks) for _ in range(3)] == [7, 8, 9]  # it runs
        await ticks.aclose()
        cancelled = time.monotonic()
        await run.cancel()
        with anyio.fail_after(2), pytest.raises(RunCancelledError):
            await run.wait()
    stopped = time.monotonic() - cancelled
    # The worker's processor itself recorded that it stopped.
    state = (await run.states())["dq_endless"]
    assert state.status == "cancelled", services.log()
    assert state.ended is not None
    assert await run.status() == "cancelled"
    print(f"cancel -> processor stopped on the worker: {stopped * 1000:.0f} ms")


@pytest.mark.anyio
@pytest.mark.redis
async def test_a_worker_shut_down_warmly_hands_its_processor_over(
    starter: Supervisor, services: Services
) -> None:
    async def when(check: Callable[[JobRecord], bool]) -> None:
        while True:  # polling the store: the state has no event to wait on
            if check((await run.states())["dq_endless"]):
                return
            await anyio.sleep(0.02)

    with anyio.fail_after(TIMEOUT):
        run = await starter.start_flow(shared.ENDLESS, inputs=[IOVal("dq_seed", 0)])
        async with aclosing(run["dq_ticks"].stream()) as ticks:
            assert [await anext(ticks) for _ in range(20)] == list(range(20))
            before = (await run.states())["dq_endless"]
            assert (before.status, before.epoch) == ("running", 0)
            # SIGTERM: Dramatiq's warm shutdown. The processor dispatches its job
            # again before the worker exits...
            doubling = services.workers[1]
            await anyio.to_thread.run_sync(doubling.stop)
            after = (await run.states())["dq_endless"]
            assert (after.status, after.epoch) == ("pending", 1), services.log()
            assert after.where == "dramatiq queue 'datagraph.dq_endless'"
            # ... and the next worker serving its queue continues it.
            services.workers[1] = await anyio.to_thread.run_sync(doubling.restart)
            await when(lambda s: s.status == "running" and s.epoch == 1)
            rest = [await anext(ticks) for _ in range(200)]
        assert rest == list(range(20, 220))  # the stream goes on, nothing twice
        await run.cancel()
        with pytest.raises(RunCancelledError):
            await run.wait()


def test_a_worker_declares_one_actor_per_processor_it_implements() -> None:
    broker = StubBroker()
    executor = DramatiqExecutor(broker, queue={"mapped": "custom_queue"})
    declared = executor.serve()
    assert set(declared) == {actor_name(name) for name in _registry}
    assert set(broker.actors) == set(declared)
    for name in _registry:
        actor = broker.get_actor(actor_name(name))
        assert actor.queue_name == executor.queue_of(name)
        assert actor.options.get("max_retries") == 0  # recovery is by lease
    assert executor.serve() == []  # booting twice declares nothing new


def test_routing_a_queue_per_processor_by_default_and_overridable() -> None:
    broker = StubBroker()
    by_default = DramatiqExecutor(broker)
    assert by_default.queue_of("parse") == "datagraph.parse"
    assert by_default.where("parse#3") == "dramatiq queue 'datagraph.parse'"
    assert DramatiqExecutor(StubBroker(), queue="etl").queue_of("parse") == "etl"
    mapped = DramatiqExecutor(StubBroker(), queue={"parse": "ingest"})
    assert mapped.queue_of("parse") == "ingest"
    assert mapped.queue_of("load") == "datagraph.load"
    routed = DramatiqExecutor(
        StubBroker(), queue=lambda name: "slow" if name == "load" else None
    )
    assert routed.queue_of("load") == "slow"
    assert routed.queue_of("parse") == "datagraph.parse"


def test_a_queue_name_dramatiq_refuses_is_an_error_before_the_run_starts() -> None:
    odd = Processor(name="odd name", inputs=["dq_x"], outputs=["dq_y"])
    flow = Flow.from_processors(odd).resolve()
    executor = DramatiqExecutor(StubBroker())
    with pytest.raises(ExecutorError) as caught:
        executor.check(flow.plan)
    assert isinstance(caught.value, DatagraphError)
    assert "'odd name'" in str(caught.value)
    assert "queue=" in str(caught.value)  # says how to route it


@pytest.mark.anyio
@pytest.mark.redis
async def test_a_broker_that_cannot_be_reached_is_a_clear_error(
    redis_url: str, redis_prefix: str
) -> None:
    from dramatiq.brokers.redis import RedisBroker

    broker = RedisBroker(url=f"redis://127.0.0.1:{free_port()}/0")  # type: ignore[no-untyped-call]
    starter = Supervisor(
        redis_config={"url": redis_url, "prefix": redis_prefix},
        executor=DramatiqExecutor(broker),
    )
    with pytest.raises(ExecutorError) as caught:
        await starter.start_flow(shared.FLOW, inputs=[IOVal("dq_n", 3)])
    assert "'dq_source'" in str(caught.value)
    assert "dramatiq queue 'datagraph.dq_source'" in str(caught.value)
    for run in await starter.list_runs():
        await starter.delete_run(run.id)
    await starter.aclose()


def test_the_memory_store_cannot_be_used_with_dramatiq_workers() -> None:
    with pytest.raises(ExecutorError, match="MemoryStore"):
        Supervisor(executor=DramatiqExecutor(StubBroker()))


def test_an_unknown_worker_backend_is_a_clear_error() -> None:
    with pytest.raises(ExecutorError, match="'curio'"):
        DramatiqExecutor(StubBroker(), backend="curio")


def test_import_datagraph_does_not_import_dramatiq() -> None:
    code = (
        "import sys, datagraph, datagraph.executors; "
        "assert 'dramatiq' not in sys.modules, 'dramatiq imported'; "
        "from datagraph.executors import DramatiqExecutor; "
        "assert 'dramatiq' in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True, env=worker_env())
