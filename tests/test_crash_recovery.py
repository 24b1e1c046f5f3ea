"""Crash recovery: workers SIGKILLed at random moments of one run lose nothing.

One flow split across two services (tests/crash_services): the source and the
last stage in service A, the consumer in service B, each service served by two
workers of one engine: ``celery worker --concurrency 1`` (prefork: a main process
and a pool child) or ``dramatiq --processes 1`` (likewise). During one run, ten
workers are SIGKILLed, pool children and whole workers (started again at once, as a
process manager would), at random moments: the first takes the worker running the
source while its consumer is mid-stream, the second the one running the consumer.
Recovery needs no coordinator: a live peer (a reader, the test's ``wait()``) sees
the dead job's lease expire and dispatches it again through the executor; the
re-run rewrites its outputs by position and the store keeps what it had. The run
must end with exactly the expected multiset of values, and each taken-over
processor must run again within lease + 5 s of its kill.
"""

from __future__ import annotations

import os
import random
import time
import uuid
from collections import Counter
from typing import TYPE_CHECKING

import anyio
import pytest

from _crash import Crasher, crash_env, expected, slow_down, speed_up
from _dramatiq_workers import DramatiqWorker, worker_env
from _workers import start_worker
from crash_services import celery_app, dramatiq_app, flow
from datagraph import IOVal, RunFailedError, Supervisor
from datagraph.executors import CeleryExecutor, DramatiqExecutor, Executor

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from _worker_processes import WorkerProcess
    from datagraph import Run

pytestmark = [pytest.mark.anyio, pytest.mark.redis, pytest.mark.timeout(180)]

LEASE = 2.0
KILLS = 10
N = 20_000
DISPATCH_TIMEOUT = 3.0


class Cluster:
    """Both services' workers (two each) and the test's supervisor, on one engine."""

    #: Whether the engine replaces a killed pool child itself.
    respawns_children: bool

    def __init__(self, redis_url: str, crash_dir: Path, backend: str) -> None:
        self.redis_url = redis_url
        self.crash_dir = crash_dir
        self.prefix = f"dgtest-crash-{uuid.uuid4().hex[:8]}"
        self.env = worker_env(
            DG_TEST_REDIS_URL=redis_url,
            DG_TEST_PREFIX=self.prefix,
            DATAGRAPH_WORKER_BACKEND=backend,
            **crash_env(crash_dir, LEASE),
        )
        self.workers: dict[str, WorkerProcess] = {}

    def executor(self) -> Executor:
        """A new executor of the engine, for the test's supervisor."""
        raise NotImplementedError

    def crasher(self, run: Run, seed: int) -> Crasher:
        """A crasher of this cluster's workers during ``run``, choosing by ``seed``."""
        return Crasher(
            run,
            self.workers,
            self.crash_dir,
            respawns_children=self.respawns_children,
            lease=LEASE,
            rng=random.Random(seed),
        )

    def supervisor(self, dispatch_timeout: float) -> Supervisor:
        """The test process's supervisor: it starts the run and implements nothing.

        It is a live peer too: its reader and ``wait()`` take lost jobs over.
        """
        return Supervisor(
            redis_config={"url": self.redis_url, "prefix": self.prefix},
            executor=self.executor(),
            lease=LEASE,
            read_timeout=0.2,
            dispatch_timeout=dispatch_timeout,
        )

    def wait_ready(self) -> None:
        """Wait until every worker serves; stop them all if one does not."""
        try:
            for worker in self.workers.values():
                worker.wait_ready()
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        for worker in self.workers.values():
            worker.kill()


class DramatiqCluster(Cluster):
    """``dramatiq tests.crash_services.dramatiq_<a|b> --processes 1``, twice each."""

    respawns_children = False  # a dead worker process stops Dramatiq's main one

    def __init__(self, redis_url: str, crash_dir: Path, backend: str) -> None:
        super().__init__(redis_url, crash_dir, backend)
        self.env["dramatiq_worker_timeout"] = "100"  # idle workers poll every 0.1 s
        self.broker = dramatiq_app.broker(redis_url, self.prefix)
        args = ["--processes", "1", "--threads", "2"]
        for service in "AB":
            for i in (1, 2):
                module = f"tests.crash_services.dramatiq_{service.lower()}"
                self.workers[f"{service}{i}"] = DramatiqWorker(module, args, self.env)
        self.wait_ready()

    def executor(self) -> Executor:
        return DramatiqExecutor(self.broker)

    def stop(self) -> None:
        super().stop()
        self.broker.close()


class CeleryCluster(Cluster):
    """``celery -A tests.crash_services.celery_<a|b> worker -c 1``, twice each."""

    respawns_children = True  # the prefork pool replaces a dead child

    def __init__(self, redis_url: str, crash_dir: Path, backend: str) -> None:

        super().__init__(redis_url, crash_dir, backend)
        self.app = celery_app.make_app(redis_url)
        for service in "AB":
            for i in (1, 2):
                module = f"tests.crash_services.celery_{service.lower()}"
                self.workers[f"{service}{i}"] = start_worker(
                    module, concurrency=1, env=self.env, wait=False
                )
        self.wait_ready()

    def executor(self) -> Executor:
        return CeleryExecutor(self.app)


@pytest.fixture(params=["celery", "dramatiq"])
def cluster(
    request: pytest.FixtureRequest,
    redis_url: str,
    tmp_path: Path,
    anyio_backend: str,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Cluster]:
    for name, value in crash_env(tmp_path, LEASE).items():
        monkeypatch.setenv(name, value)
    kind = DramatiqCluster if request.param == "dramatiq" else CeleryCluster
    cluster = kind(redis_url, tmp_path, anyio_backend)
    try:
        yield cluster
    finally:
        cluster.stop()


async def test_ten_kills_during_one_run_lose_and_duplicate_nothing(
    cluster: Cluster,
) -> None:
    seed = int(os.environ.get("DG_CRASH_SEED", random.randrange(1 << 32)))
    print(f"\ncrash test seed: {seed} (DG_CRASH_SEED={seed} repeats it)")
    slow_down(cluster.crash_dir)
    # Long enough for a killed worker to boot again before its jobs time out.
    supervisor = cluster.supervisor(dispatch_timeout=30)
    run = await supervisor.start_flow(flow.FLOW, inputs=[IOVal("cr_n", N)])
    crasher = cluster.crasher(run, seed)
    values: list[int] = []

    first = anyio.Event()

    async def read() -> None:
        async for value in run["cr_out"].stream():
            values.append(value)
            first.set()

    started = time.monotonic()
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(read)
            # The consumer is mid-stream before anything is killed.
            await crasher.wait_running(*(p.name for p in flow.FLOW.plan.processors))
            with anyio.fail_after(10):
                await first.wait()
            await crasher.chaos(KILLS)
            speed_up(cluster.crash_dir)
            with anyio.fail_after(60):
                await run.wait()
    finally:
        print(crasher.report())
    elapsed = time.monotonic() - started
    got, want = Counter(values), expected(N)
    lost, duplicated = want - got, got - want
    recoveries = sorted(s for k in crasher.kills for s in k.recovered.values())
    print(
        f"kills survived: {len(crasher.kills)}; values lost: {sum(lost.values())}, "
        f"duplicated: {sum(duplicated.values())}; kill to recovery: max "
        f"{recoveries[-1]:.2f}s, median {recoveries[len(recoveries) // 2]:.2f}s "
        f"(lease {LEASE:g}s); the run took {elapsed:.1f}s"
    )
    assert len(crasher.kills) >= KILLS
    assert {k.service for k in crasher.kills} == {"A", "B"}
    assert not lost, f"{sum(lost.values())} values lost"
    assert not duplicated, f"{sum(duplicated.values())} values duplicated"
    assert got == want
    assert await run.status() == "succeeded"
    assert all(k.recovered for k in crasher.kills)  # every kill hit a running job
    assert recoveries[-1] <= LEASE + 5, crasher.report()
    await supervisor.aclose()


async def test_a_run_whose_workers_all_die_for_good_ends_failed_naming_them(
    cluster: Cluster,
) -> None:
    slow_down(cluster.crash_dir)
    supervisor = cluster.supervisor(dispatch_timeout=DISPATCH_TIMEOUT)
    run = await supervisor.start_flow(flow.FLOW, inputs=[IOVal("cr_n", N)])
    crasher = cluster.crasher(run, 0)
    await crasher.wait_running(*(p.name for p in flow.FLOW.plan.processors))
    for worker in cluster.workers.values():
        worker.kill()  # and none comes back
    killed = time.monotonic()
    with (
        anyio.fail_after(LEASE + DISPATCH_TIMEOUT + 10),
        pytest.raises(RunFailedError) as caught,
    ):
        await run.wait()
    took = time.monotonic() - killed
    print(f"\nall workers dead: the run failed {took:.2f}s later: {caught.value}")
    assert took <= LEASE + DISPATCH_TIMEOUT + 2
    errors = caught.value.errors
    assert set(errors) == {p.name for p in flow.FLOW.plan.processors}
    for name, error in errors.items():
        # Taken over at the lease's end, then not started within the timeout.
        assert error.error_type == "DispatchTimeout", error
        assert f"'datagraph.{name}'" in error.message  # the queue it waits in
    assert await run.status() == "failed"
    await supervisor.aclose()
