"""CeleryExecutor with real ``celery worker`` processes, on Redis and RabbitMQ.

Three services (tests/services) each import the shared declarations and implement
some of them: svc_a on Celery's default prefork pool (two children), svc_b on
``--pool threads``, svc_c on ``--pool solo``. This process implements none of
them: it starts runs and reads their results, like any starter.

The workers of each (broker, event loop) pair start once per module: Redis with
asyncio, RabbitMQ with trio. The workers' event loop is the test's
(``DATAGRAPH_WORKER_BACKEND``), so both loops run on both sides.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import os
import re
import sys
import types
import uuid
from contextlib import aclosing
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
import pytest
from celery import Celery

from _workers import READY_TIMEOUT, Worker, restart_workers, start_worker, stop_workers
from datagraph import (
    IO,
    CeleryExecutor,
    IOVal,
    MemoryStore,
    Processor,
    Run,
    Supervisor,
)
from datagraph.exceptions import ExecutorError, RunCancelledError, RunFailedError
from datagraph.stores.redis import RedisStore
from services import shared
from services.app import QUEUES, TASK_ROUTES, make_app, make_executor

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable, Iterator, Mapping

    from datagraph._plan import JobRecord

pytestmark = pytest.mark.redis

TIMEOUT = 30
#: Short, so a lost processor is taken over within seconds (workers and tests).
LEASE = 5


@pytest.fixture(
    scope="module",
    params=[("redis", "asyncio"), ("rabbitmq", "trio")],
    ids=["redis-asyncio", "rabbitmq-trio"],
)
def stack(request: pytest.FixtureRequest) -> tuple[str, str]:
    """A Celery broker and an event loop, for the workers and the test alike.

    Every test runs with both brokers and on both loops; pairing them (instead
    of all four combinations) halves the workers started, which is most of the
    module's time.
    """
    broker, backend = request.param
    return str(broker), str(backend)


@pytest.fixture(scope="module")
def anyio_backend(stack: tuple[str, str]) -> str:
    """Module-scoped, so each loop's workers start once for all the tests."""
    return stack[1]


@pytest.fixture(scope="module")
def broker_url(stack: tuple[str, str], request: pytest.FixtureRequest) -> str:
    """The URL of the stack's broker (a throwaway server of the session)."""
    fixture = "redis_url" if stack[0] == "redis" else "rabbitmq_url"
    return str(request.getfixturevalue(fixture))


@dataclasses.dataclass
class Services:
    broker: str
    redis_url: str
    prefix: str
    a: Worker
    b: Worker
    c: Worker


@pytest.fixture(scope="module")
def services(broker_url: str, redis_url: str, anyio_backend: str) -> Iterator[Services]:
    """svc_a (prefork, 2 children), svc_b (threads) and svc_c (solo), running."""
    prefix = f"dgtest-celery-{uuid.uuid4().hex[:8]}"
    env = {
        "DGTEST_BROKER": broker_url,
        "DATAGRAPH_REDIS_URL": redis_url,
        "DATAGRAPH_PREFIX": prefix,
        "DATAGRAPH_WORKER_BACKEND": anyio_backend,
        "DATAGRAPH_LEASE": str(LEASE),
    }
    # Started side by side: each takes seconds to boot.
    workers = [
        start_worker(f"tests.services.{name}", pool=pool, env=env, wait=False)
        for name, pool in (
            ("svc_a", "prefork"),
            ("svc_b", "threads"),
            ("svc_c", "solo"),
        )
    ]
    services = Services(broker_url, redis_url, prefix, *workers)
    try:
        for worker in workers:
            worker.wait_ready()
        yield services
    finally:
        # The current ones: a test may have restarted some.
        stop_workers(services.a, services.b, services.c)


class HoldingExecutor(CeleryExecutor):
    """A CeleryExecutor that keeps some jobs back until ``release()``."""

    def __init__(self, app: Celery, hold: set[str]) -> None:
        super().__init__(app, queue=QUEUES)
        self.hold = hold
        self.held: list[tuple[str, str]] = []

    async def dispatch(self, run_id: str, job: str) -> None:
        if job in self.hold:
            self.held.append((run_id, job))
            return
        await super().dispatch(run_id, job)

    async def release(self) -> None:
        for run_id, job in self.held:
            await super().dispatch(run_id, job)
        self.held.clear()


@pytest.fixture
async def app(services: Services) -> AsyncIterator[Celery]:
    app = make_app(services.broker)
    yield app
    app.close()


@contextlib.asynccontextmanager
async def starting(
    services: Services, executor: CeleryExecutor, **settings: Any
) -> AsyncIterator[Supervisor]:
    """A supervisor of this process on the services' store, with ``executor``."""
    supervisor = Supervisor(
        redis_config={"url": services.redis_url, "prefix": services.prefix},
        executor=executor,
        **{"lease": LEASE, **settings},
    )
    try:
        yield supervisor
    finally:
        await supervisor.aclose()


@pytest.fixture
async def starter(services: Services, app: Celery) -> AsyncIterator[Supervisor]:
    """This process's supervisor: starts runs, implements nothing."""
    async with starting(services, make_executor(app)) as supervisor:
        yield supervisor


async def states_when(
    run: Run, ready: Callable[[Mapping[str, JobRecord]], bool]
) -> dict[str, JobRecord]:
    """Wait until the run's processor states satisfy ``ready``; return them."""
    while True:
        states = await run.states()
        if ready(states):
            return states
        await anyio.sleep(0.02)  # states live in the store; nothing signals here


@pytest.mark.anyio
async def test_a_flow_split_across_two_services(
    starter: Supervisor, app: Celery, services: Services
) -> None:
    numbers = list(range(200))
    with anyio.fail_after(TIMEOUT):
        run = await starter.start_flow(
            shared.SPLIT, inputs=[IOVal("svc_numbers", n) for n in numbers]
        )
        assert await run["svc_labels"].collect() == [f"sq={n * n}" for n in numbers]
        assert await run["svc_total"].collect() == [sum(n * n for n in numbers)]
        await run.wait()
    assert await run.status() == "succeeded"
    # Each job went to the service that implements it, through its queue:
    # the default one, the one Celery's task_routes name, the executor's own.
    for worker, task in [
        (services.a, "datagraph.svc_square"),
        (services.b, "datagraph.svc_label"),
        (services.b, "datagraph.svc_total"),
    ]:
        assert worker.log.wait_for(f"Task {task}[", 5), worker.log.text()
    assert "datagraph.svc_label" not in services.a.log.text()
    assert "datagraph.svc_square" not in services.b.log.text()
    # The starter sends tasks by name: it registers none.
    assert not [name for name in app.tasks if name.startswith("datagraph.")]


@pytest.mark.anyio
async def test_twelve_streaming_processors_run_at_once_on_two_pool_slots(
    services: Services, app: Celery
) -> None:
    assert len(services.a.children()) == 2  # celery worker --concurrency 2
    executor = HoldingExecutor(app, hold={"svc_chain0"})
    async with starting(services, executor) as starter:
        with anyio.fail_after(TIMEOUT):
            run = await starter.start_flow(
                shared.CHAIN, inputs=[IOVal("svc_c0", n) for n in range(100)]
            )
            # Eleven processors run at once, waiting for the one held back: a
            # worker that gave each a pool slot of its own could not run them.
            states = await states_when(
                run, lambda s: sum(st.status == "running" for st in s.values()) == 11
            )
            assert states["svc_chain0"].status == "pending"
            await executor.release()
            assert await run["svc_c12"].collect() == [n + 12 for n in range(100)]
            await run.wait()
            assert await run.status() == "succeeded"


@pytest.mark.anyio
async def test_a_consumer_dispatched_before_its_producer(
    services: Services, app: Celery
) -> None:
    executor = HoldingExecutor(app, hold={"svc_square"})
    async with starting(services, executor) as starter:
        with anyio.fail_after(TIMEOUT):
            run = await starter.start_flow(
                shared.ECHO, inputs=[IOVal("svc_numbers", n) for n in range(50)]
            )
            await states_when(run, lambda s: s["svc_echo"].status == "running")
            assert (await run.states())["svc_square"].status == "pending"
            await executor.release()  # the producer starts after its consumer
            assert await run["svc_echoed"].collect() == [n * n for n in range(50)]
            await run.wait()
    # svc_echo ran on the solo pool's worker.
    assert services.c.log.wait_for("Task datagraph.svc_echo[", 5)


@pytest.mark.anyio
async def test_cancel_stops_processors_on_every_worker_within_two_seconds(
    starter: Supervisor, services: Services
) -> None:
    with anyio.fail_after(TIMEOUT):
        run = await starter.start_flow(shared.ENDLESS, inputs=[IOVal("svc_start", 0)])
        async with aclosing(run["svc_counts"].stream()) as counts:
            assert await anext(counts) == 100  # ticks flow from svc_a to svc_b
    with anyio.fail_after(2):
        await run.cancel()
        # Each worker records its own processor's end.
        states = await states_when(run, lambda s: all(st.finished for st in s.values()))
    assert {name: st.status for name, st in states.items()} == {
        "svc_ticker": "cancelled",
        "svc_tally": "cancelled",
    }
    assert await run.status() == "cancelled"
    with pytest.raises(RunCancelledError):
        await run.wait(timeout=TIMEOUT)


@pytest.mark.anyio
@pytest.mark.timeout(180)
async def test_workers_shut_down_warmly_hand_their_processors_over(
    starter: Supervisor, services: Services
) -> None:
    # Restarting two workers takes seconds, more on a busy machine.
    with anyio.fail_after(TIMEOUT + 2 * READY_TIMEOUT):
        run = await starter.start_flow(shared.ENDLESS, inputs=[IOVal("svc_start", 0)])
        async with aclosing(run["svc_counts"].stream()) as counts:
            assert await anext(counts) == 100
            before = await run.states()
            assert {(st.status, st.epoch) for st in before.values()} == {("running", 0)}
            # SIGTERM: Celery's warm shutdown, of a prefork worker (the ticker in
            # a pool child) and of a threads one (the tally). Each processor
            # dispatches its job again before its process exits...
            await anyio.to_thread.run_sync(
                functools.partial(stop_workers, services.a, services.b)
            )
            after = await run.states()
            assert {(st.status, st.epoch) for st in after.values()} == {("pending", 1)}
            assert after["svc_tally"].where == "celery queue 'datagraph.svc_tally'"
            # ... and the next workers serving their queues continue them.
            services.a, services.b = await anyio.to_thread.run_sync(
                functools.partial(restart_workers, services.a, services.b)
            )
            await states_when(
                run,
                lambda s: all(st.status == "running" and st.epoch == 1
                              for st in s.values()),
            )  # fmt: skip
            assert await anext(counts) == 200  # the stream goes on, nothing twice
        await run.cancel()
        with pytest.raises(RunCancelledError):
            await run.wait()


@pytest.mark.anyio
@pytest.mark.timeout(120)
async def test_a_killed_pool_child_is_taken_over_with_nothing_lost_or_twice(
    starter: Supervisor, services: Services
) -> None:
    with anyio.fail_after(2 * TIMEOUT):
        run = await starter.start_flow(
            shared.ENDLESS, inputs=[IOVal("svc_start", 0)], all_outputs=True
        )
        ticks: list[int] = []
        async with aclosing(run["svc_ticks"].stream()) as stream:
            async for tick in stream:
                ticks.append(tick)
                if len(ticks) == 500:
                    break
            # SIGKILL both pool children of svc_a (one of them runs the ticker):
            # nothing records anything; the prefork pool starts new children.
            for pid in services.a.children():
                services.a.kill_child(pid)
            killed_at = (await starter.store.state(run.id, "svc_ticks")).length
            # A live peer sees the lease expire and dispatches the ticker again.
            await states_when(
                run,
                lambda s: (
                    s["svc_ticker"].status == "running" and s["svc_ticker"].epoch == 1
                ),
            )
            async for tick in stream:
                ticks.append(tick)
                if len(ticks) == killed_at + 500:  # 500 written after the kill
                    break
        # The re-run wrote the same values again from the first; the store kept
        # each position once: no gap and no duplicate across the kill.
        assert ticks == list(range(killed_at + 500))
        taken = (await run.states())["svc_ticker"]
        assert [f.error_type for f in taken.history] == ["Takeover"]
        await run.cancel()


@pytest.mark.anyio
async def test_a_processor_no_service_implements_waits_visibly_then_fails(
    services: Services, app: Celery
) -> None:
    queue = "celery queue 'datagraph.svc_nobody'"
    async with starting(services, make_executor(app), dispatch_timeout=2) as starter:
        run = await starter.start_flow(
            shared.NOBODY, inputs=[IOVal("svc_numbers", n) for n in range(5)]
        )
        # Visibly waiting: its state and the snapshot say where its job waits...
        waiting = (await run.states())["svc_nobody"]
        assert (waiting.status, waiting.where) == ("pending", queue)
        assert (await run.snapshot()).processors["svc_nobody"].where == queue
        # ... and so does `datagraph runs show`, from another process.
        shown = await anyio.run_process(
            [sys.executable, "-c", "from datagraph.cli import main; main()",
             "runs", "show", run.id, "--redis-url", services.redis_url],
            env={**os.environ, "DATAGRAPH_PREFIX": services.prefix, "COLUMNS": "200"},
            check=False,
        )  # fmt: skip
        out = shown.stdout.decode()
        assert shown.returncode == 0, out + shown.stderr.decode()
        rows = [line for line in out.splitlines() if "waiting for a worker" in line]
        assert len(rows) == 1, out
        assert "svc_nobody" in rows[0]
        assert queue in rows[0]
        # Then the run fails, naming the processor and the queue.
        with anyio.fail_after(TIMEOUT), pytest.raises(RunFailedError) as caught:
            await run.wait()
    error = caught.value.errors["svc_nobody"]
    assert error.error_type == "DispatchTimeout"
    assert queue in error.message
    assert list(caught.value.errors) == ["svc_nobody"]


# --------------------------------------------------------------- without workers


@pytest.fixture
def plain_app() -> Iterator[Celery]:
    app = Celery("dgtest-plain", broker="memory://", set_as_current=False)
    yield app
    app.close()


def test_queues_default_to_one_per_processor(plain_app: Celery) -> None:
    executor = CeleryExecutor(plain_app)
    assert executor.queue_of("parse") == "datagraph.parse"
    assert executor.where("parse") == "celery queue 'datagraph.parse'"
    assert executor.where("parse#3") == "celery queue 'datagraph.parse'"
    assert executor.task_name("parse") == "datagraph.parse"


def test_queues_follow_the_executor_then_celery_task_routes(plain_app: Celery) -> None:
    plain_app.conf.task_routes = {
        **TASK_ROUTES,
        "datagraph.load": {"queue": "from-routes"},
    }
    mapped = CeleryExecutor(plain_app, queue={"parse": "ingest", "load": "mine"})
    assert mapped.queue_of("parse") == "ingest"
    assert mapped.queue_of("load") == "mine"  # the executor's choice wins
    assert mapped.queue_of("svc_label") == "dgtest.labels"  # task_routes
    assert mapped.queue_of("other") == "datagraph.other"
    one = CeleryExecutor(plain_app, queue="everything")
    assert one.queue_of("parse") == "everything"

    def by_prefix(name: str) -> str | None:
        return "fast" if name.startswith("f") else None

    chosen = CeleryExecutor(plain_app, queue=by_prefix)
    assert chosen.queue_of("fetch") == "fast"
    assert chosen.queue_of("load") == "from-routes"
    assert chosen.where("parse") == "celery queue 'datagraph.parse'"


@pytest.mark.parametrize("bad", ["", {"parse": ""}, {"parse": 3}, 42])
def test_a_bad_queue_choice_is_refused(plain_app: Celery, bad: Any) -> None:
    with pytest.raises(ExecutorError, match="CeleryExecutor queue must be"):
        CeleryExecutor(plain_app, queue=bad)


def test_a_queue_function_must_return_a_name(plain_app: Celery) -> None:
    executor = CeleryExecutor(plain_app, queue=lambda name: 7)  # type: ignore[arg-type,return-value]
    with pytest.raises(ExecutorError, match=r"returned 7 for processor 'parse'"):
        executor.where("parse")


def test_the_worker_backend_comes_from_the_argument_or_the_environment(
    plain_app: Celery, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("DATAGRAPH_WORKER_BACKEND", raising=False)
    assert CeleryExecutor(plain_app).backend == "asyncio"
    monkeypatch.setenv("DATAGRAPH_WORKER_BACKEND", "trio")
    assert CeleryExecutor(plain_app).backend == "trio"
    assert CeleryExecutor(plain_app, backend="asyncio").host.backend == "asyncio"
    monkeypatch.setenv("DATAGRAPH_WORKER_BACKEND", "curio")
    with pytest.raises(
        ExecutorError, match=r"one of \['asyncio', 'trio'\], got 'curio'"
    ):
        CeleryExecutor(plain_app)


def test_the_memory_store_is_refused(plain_app: Celery) -> None:
    with pytest.raises(ExecutorError, match="cannot see this process's MemoryStore"):
        Supervisor(store=MemoryStore(), executor=CeleryExecutor(plain_app))


def test_a_missing_celery_is_a_clear_import_error(
    plain_app: Celery, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "celery.signals", None)
    with pytest.raises(ImportError, match=r"pip install 'datagraph\[celery\]'"):
        CeleryExecutor(plain_app)


served = Processor(name="celery_served", inputs=["cs_in"], outputs=["cs_out"])


@served
async def _served(cs_in: IO[int]) -> AsyncIterator[int]:
    async for n in cs_in.stream():
        yield n


def test_a_worker_serves_the_queues_of_what_its_process_implements(
    plain_app: Celery, redis_url: str
) -> None:
    executor = CeleryExecutor(plain_app, queue={"celery_served": "mine"})
    Supervisor(store=RedisStore(redis_url, prefix="unused"), executor=executor)
    assert not [t for t in plain_app.tasks if t.startswith("datagraph.")]
    names = executor.serve()  # what the worker_init signal does in a worker
    assert "celery_served" in names
    assert "datagraph.celery_served" in plain_app.tasks
    consumed = set(plain_app.amqp.queues.consume_from)
    assert "mine" in consumed
    assert consumed == {executor.queue_of(name) for name in names}


def test_a_worker_started_with_q_keeps_the_queues_it_was_given(
    plain_app: Celery, redis_url: str
) -> None:
    executor = CeleryExecutor(plain_app)
    Supervisor(store=RedisStore(redis_url, prefix="unused"), executor=executor)
    plain_app.amqp.queues.select(["given"])  # what `celery worker -Q given` does
    # celeryd_init tells the executor about the worker's options.
    worker = types.SimpleNamespace(app=plain_app)
    executor._on_celeryd_init(
        sender="w@h", instance=worker, options={"queues": "given"}
    )
    assert "celery_served" in executor.serve()
    assert "datagraph.celery_served" in plain_app.tasks  # registered all the same
    assert set(plain_app.amqp.queues.consume_from) == {"given"}


def test_the_deployment_docs_code_is_valid_python() -> None:
    text = (Path(__file__).resolve().parents[1] / "docs" / "deployment.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.DOTALL)
    assert len(blocks) >= 3
    for block in blocks:
        compile(block, "docs/deployment.md", "exec")
