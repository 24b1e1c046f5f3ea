"""Distributed rows: W3 with each stage in a worker process of its own.

``stage_workers()`` starts one worker per W3 stage, consuming only that stage's
queue (``datagraph.<stage>``): ``celery -A benchmarks.celery_service worker`` or
``dramatiq benchmarks.dramatiq_service``, against the bench's Redis. The process
that starts the runs implements nothing. Measured here:

- ``w3_times``: W3's run time, and the time from ``start_flow`` to the first
  final value;
- ``recovery_times``: the time from SIGKILL of the worker running a stage to that
  stage running again, taken over by a live peer once its lease expired (a second
  worker stands by on the stage's queue, as in any deployment that survives the
  loss of one).

    python -m benchmarks.distributed [--engine celery|dramatiq] [--n N] [--repeat R]

prints the figures of one engine on their own (``make bench`` has the rows).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from typing import TYPE_CHECKING, Any

import anyio
import anyio.to_thread

from ._common import ROOT, median, redis_server, repo_env, sum_check

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from datagraph import Supervisor

STAGES = ("w3_source", "w3_double", "w3_increment")
ENGINES = ("celery", "dramatiq")
#: What each engine's worker prints once it consumes.
READY = {"celery": " ready.", "dramatiq": "Worker process is ready for action."}
#: The lease of the recovery figure (seconds): short, as in the crash tests.
RECOVERY_LEASE = 2.0


def _command(engine: str, stage: str) -> list[str]:
    queue = f"datagraph.{stage}"
    name = f"dgbench-{uuid.uuid4().hex[:8]}@%h"
    if engine == "celery":
        return [sys.executable, "-m", "celery", "-A", "benchmarks.celery_service",
                "worker", "--pool", "prefork", "--concurrency", "1", "-Q", queue,
                "--loglevel", "INFO", "--without-gossip", "--without-mingle",
                "--without-heartbeat", "-n", name]  # fmt: skip
    return [sys.executable, "-m", "dramatiq", "benchmarks.dramatiq_service",
            "--processes", "1", "--threads", "1", "--queues", queue]  # fmt: skip


def _env(engine: str, redis_url: str, settings: dict[str, str]) -> dict[str, str]:
    """A stage worker's environment: ``settings`` its only ``DATAGRAPH_*``."""
    env = {k: v for k, v in repo_env().items() if not k.startswith("DATAGRAPH_")}
    env["DG_BENCH_REDIS_URL"] = redis_url
    env.update(settings)
    if engine == "dramatiq":
        # An idle Dramatiq worker polls Redis at most every 100 ms (1 s by default).
        env["dramatiq_worker_timeout"] = "100"
    return env


class StageWorker:
    """One worker process (group) serving one stage's queue."""

    def __init__(self, engine: str, stage: str, env: dict[str, str]) -> None:
        self.engine = engine
        self.stage = stage
        self.log = tempfile.TemporaryFile()  # noqa: SIM115  # closed by stop()
        self.process = subprocess.Popen(
            _command(engine, stage),
            cwd=ROOT,
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own group: kill() takes its pool too
        )

    def output(self) -> str:
        """What the worker printed so far."""
        self.log.seek(0)
        return self.log.read().decode(errors="replace")

    def wait_ready(self, deadline: float) -> None:
        """Wait until the worker consumes (a log we own: polled)."""
        while READY[self.engine] not in self.output():
            if self.process.poll() is not None or time.monotonic() > deadline:
                msg = f"a {self.engine} worker did not start:\n{self.output()[-3000:]}"
                raise RuntimeError(msg)
            time.sleep(0.05)

    def kill(self) -> None:
        """SIGKILL the whole worker."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()

    def stop(self) -> None:
        """Stop the worker (warm shutdown, then SIGKILL)."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=20)
        self.kill()
        self.log.close()


@contextlib.contextmanager
def stage_workers(
    engine: str,
    redis_url: str,
    *,
    backend: str = "asyncio",
    settings: dict[str, str] | None = None,
    standby: tuple[str, ...] = (),
) -> Iterator[dict[str, list[StageWorker]]]:
    """Start a worker per W3 stage (and a second one for each ``standby`` stage).

    Args:
        engine: ``"celery"`` (prefork, concurrency 1) or ``"dramatiq"`` (one
            process, one thread).
        redis_url: the store; the broker is another database of that server.
        backend: the workers' event loop.
        settings: ``DATAGRAPH_*`` variables of the workers.
        standby: stages that get a second worker.
    """
    env = _env(
        engine, redis_url, {"DATAGRAPH_WORKER_BACKEND": backend, **(settings or {})}
    )
    workers: dict[str, list[StageWorker]] = {stage: [] for stage in STAGES}
    try:
        for stage in (*STAGES, *standby):
            workers[stage].append(StageWorker(engine, stage, env))
        deadline = time.monotonic() + 90
        for stage_list in workers.values():
            for worker in stage_list:
                worker.wait_ready(deadline)
        yield workers
    finally:
        for stage_list in workers.values():
            for worker in stage_list:
                worker.stop()


def supervisor(engine: str, redis_url: str, **settings: Any) -> Supervisor:
    """The starting process's supervisor (library defaults unless given)."""
    from datagraph import Settings, Supervisor

    from .flows import PREFIX

    base = Settings(redis_url=redis_url, prefix=PREFIX, **settings)
    if engine == "celery":
        from datagraph.executors.celery import CeleryExecutor

        from . import celery_service

        executor: Any = CeleryExecutor(celery_service.make_app(redis_url))
    else:
        from datagraph.executors.dramatiq import DramatiqExecutor

        from . import dramatiq_service

        executor = DramatiqExecutor(dramatiq_service.make_broker(redis_url))
    return Supervisor(settings=base, executor=executor)


async def w3_once(supervisor: Supervisor, n: int) -> tuple[float, float]:
    """Run W3 once; return (seconds to the last value, to the first one).

    Both clocks start before ``start_flow``: the first value's time includes
    dispatching the three stages to their workers.
    """
    from datagraph import IOVal

    from .flows import W3, timed_run

    times = await timed_run(
        supervisor, W3, IOVal("n", n), "out", n * n, f"distributed W3 N={n}"
    )
    return times.end, times.first


async def w3_times(
    engine: str, redis_url: str, n: int, runs: int, first_n: int
) -> tuple[list[float], list[float]]:
    """W3 through the stage workers: seconds of each run, and to each first value.

    A warm-up run first; then ``runs`` runs of N=``n`` (throughput) and ``runs``
    of N=``first_n`` (time to the first final value).
    """
    async with supervisor(engine, redis_url) as dg:
        await w3_once(dg, 1000)
        seconds = [(await w3_once(dg, n))[0] for _ in range(runs)]
        firsts = [(await w3_once(dg, first_n))[1] for _ in range(runs)]
    return seconds, firsts


async def _recovery_once(
    dg: Supervisor, workers: list[StageWorker], spawn: Callable[[], StageWorker]
) -> float:
    """Kill the worker running ``w3_double`` mid-run; seconds until it runs again.

    ``workers`` holds the one worker serving ``w3_double``; once the stage
    streams, ``spawn()`` starts a second one on its queue (the one left standing)
    and the first is killed.
    """
    from datagraph import IOVal

    from .flows import W3

    run = await dg.start_flow(W3, inputs=[IOVal("n", 5_000_000)])
    values = run["out"].stream()
    await anext(values)  # double is mid-stream
    standby = await anyio.to_thread.run_sync(spawn)
    epoch = (await run.states())["w3_double"].epoch
    (victim,) = workers
    killed_at = time.time()
    victim.kill()
    workers[:] = [standby]
    async with anyio.create_task_group() as tg:

        async def drain() -> None:  # a live peer: this reader takes the job over
            async for _ in values:
                pass

        tg.start_soon(drain)
        with anyio.fail_after(60):
            while True:
                state = (await run.states())["w3_double"]
                # A takeover bumps the epoch; the new run then records its start.
                started = state.started if state.status == "running" else None
                if state.epoch > epoch and started is not None and started > killed_at:
                    recovered = started - killed_at
                    break
                await anyio.sleep(0.01)
        tg.cancel_scope.cancel()
    await run.cancel()
    await dg.store.delete_run(run.id)
    victim.stop()
    return recovered


def recovery_times(
    engine: str, redis_url: str, runs: int, backend: str = "asyncio"
) -> list[float]:
    """Seconds from SIGKILL of a stage's worker to the stage running again.

    Each run kills the worker running ``w3_double`` while values flow, a second
    worker of that stage standing by (the lease: ``RECOVERY_LEASE``).
    """
    lease = {"DATAGRAPH_LEASE": str(RECOVERY_LEASE), "DATAGRAPH_READ_TIMEOUT": "0.2"}
    env = _env(engine, redis_url, {"DATAGRAPH_WORKER_BACKEND": backend, **lease})

    def spawn() -> StageWorker:
        worker = StageWorker(engine, "w3_double", env)
        worker.wait_ready(time.monotonic() + 90)
        return worker

    results = []
    with stage_workers(engine, redis_url, backend=backend, settings=lease) as workers:
        dg = supervisor(engine, redis_url, lease=RECOVERY_LEASE, read_timeout=0.2)

        async def measure() -> None:
            try:
                for _ in range(runs):
                    seconds = await _recovery_once(dg, workers["w3_double"], spawn)
                    results.append(seconds)
            finally:
                await dg.aclose()

        anyio.run(measure, backend=backend)
    return results


def one_chain_seconds() -> float:
    """Seconds from sending one Celery chain of W3's 3 tasks to having its result.

    The Celery peer's workers (``celery_peer.workers``) must be running. The result
    is polled every 5 ms (Celery's default, 0.5 s, would measure the polling).
    """
    from celery import chain

    from . import celery_app as c

    start = time.perf_counter()
    result = chain(c.w3_source.s(3), c.w3_double.s(), c.w3_increment.s())
    value = result.apply_async().get(timeout=60, interval=0.005)
    elapsed = time.perf_counter() - start
    sum_check(value, 7, "one Celery chain")
    return elapsed


def main(argv: list[str] | None = None) -> int:
    """Measure one engine's distributed figures and print their medians."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.distributed")
    parser.add_argument("--engine", choices=ENGINES, default="celery")
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--first-n", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--redis-url")
    parser.add_argument("--backend", default="asyncio", choices=["asyncio", "trio"])
    parser.add_argument("--no-recovery", action="store_true")
    args = parser.parse_args(argv)
    with contextlib.ExitStack() as stack:
        url = args.redis_url or stack.enter_context(redis_server())
        with stage_workers(args.engine, url, backend=args.backend):
            seconds, firsts = anyio.run(
                w3_times,
                args.engine,
                url,
                args.n,
                args.repeat,
                args.first_n,
                backend=args.backend,
            )
        recoveries = (
            []
            if args.no_recovery
            else recovery_times(args.engine, url, args.repeat, args.backend)
        )
    print(
        f"W3, each stage in its own {args.engine} worker ({args.backend}), "
        f"N={args.n:,}: {args.n / median(seconds):,.0f} values/s (median of "
        f"{args.repeat}; runs {', '.join(f'{s:.2f}' for s in seconds)} s)"
    )
    print(
        f"start_flow to the first final value, N={args.first_n:,}: "
        f"{median(firsts) * 1000:.0f} ms (runs "
        f"{', '.join(f'{f * 1000:.0f}' for f in firsts)} ms)"
    )
    if recoveries:
        print(
            f"SIGKILL of a worker to its stage running again (lease "
            f"{RECOVERY_LEASE:g} s): {median(recoveries):.2f} s (runs "
            f"{', '.join(f'{r:.2f}' for r in recoveries)} s)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
