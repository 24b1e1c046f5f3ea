"""Distributed rows: W3 with each stage in a worker process of its own.

``dramatiq_stages()`` starts one ``dramatiq benchmarks.dramatiq_service`` per W3
stage (``-Q datagraph.<stage>``: one queue each), against the bench's Redis;
``w3_distributed_once()`` starts W3 from this process, which implements
nothing of it, and times the run and its first final value.

    python -m benchmarks.distributed [--n N] [--repeat R] [--redis-url URL]

prints the Dramatiq figures on their own (the suite has the rows).
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
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio

from ._common import median, redis_server, sum_check

if TYPE_CHECKING:
    from collections.abc import Iterator

    from datagraph import Supervisor

ROOT = Path(__file__).resolve().parent.parent
STAGES = ("w3_source", "w3_double", "w3_increment")
READY = "Worker process is ready for action."


def _env(redis_url: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DATAGRAPH_")}
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p
    )
    env["DG_BENCH_REDIS_URL"] = redis_url
    env.update(extra)
    return env


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)  # the group we started
            process.wait()


@contextlib.contextmanager
def dramatiq_stages(
    redis_url: str, *, backend: str = "asyncio", worker_timeout_ms: int | None = None
) -> Iterator[list[subprocess.Popen[bytes]]]:
    """Start a ``dramatiq`` worker (1 process, 1 thread) per W3 stage.

    ``worker_timeout_ms`` sets Dramatiq's ``dramatiq_worker_timeout`` (how long
    an idle worker may sleep between polls of the Redis broker; 1,000 by default).
    """
    extra = {"DATAGRAPH_WORKER_BACKEND": backend}
    if worker_timeout_ms is not None:
        extra["dramatiq_worker_timeout"] = str(worker_timeout_ms)
    env = _env(redis_url, **extra)
    processes: list[subprocess.Popen[bytes]] = []
    logs: list[Any] = []
    try:
        for stage in STAGES:
            log = tempfile.TemporaryFile()  # noqa: SIM115  # closed below
            logs.append(log)
            command = [sys.executable, "-m", "dramatiq", "benchmarks.dramatiq_service",
                       "--processes", "1", "--threads", "1",
                       "--queues", f"datagraph.{stage}"]  # fmt: skip
            processes.append(
                subprocess.Popen(
                    command,
                    cwd=ROOT,
                    env=env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            )
        deadline = time.monotonic() + 60
        for process, log in zip(processes, logs, strict=True):
            while True:  # polling a log we own: the worker says when it is up
                log.seek(0)
                output = log.read().decode(errors="replace")
                if READY in output:
                    break
                if process.poll() is not None or time.monotonic() > deadline:
                    msg = f"a dramatiq worker did not start:\n{output[-3000:]}"
                    raise RuntimeError(msg)
                time.sleep(0.05)
        yield processes
    finally:
        for process in processes:
            _stop(process)
        for log in logs:
            log.close()


async def w3_distributed_once(supervisor: Supervisor, n: int) -> tuple[float, float]:
    """Run W3 once; return (seconds to the last value, to the first one).

    Both clocks start before ``start_flow``: the first value's time includes
    dispatching all three stages to their workers.
    """
    from datagraph import IOVal

    from .flows import W3

    start = time.perf_counter()
    run = await supervisor.start_flow(W3, inputs=[IOVal("n", n)])
    values = run["out"].stream()
    total = await anext(values)
    first = time.perf_counter() - start
    async for value in values:
        total += value
    await run.wait()
    elapsed = time.perf_counter() - start
    await supervisor.store.delete_run(run.id)
    sum_check(total, n * n, f"distributed W3 N={n}")
    return elapsed, first


async def dramatiq_w3(
    redis_url: str, n: int, runs: int, first_n: int
) -> tuple[list[float], list[float]]:
    """W3 through the Dramatiq stage workers: run seconds and first-value seconds.

    A warm-up run first; then ``runs`` runs of N=n (throughput) and ``runs`` of
    N=first_n (time to first final value, with workers idle before each).
    """
    from . import dramatiq_service

    broker = dramatiq_service.make_broker(redis_url)
    supervisor = dramatiq_service.make_supervisor(redis_url, broker)
    try:
        await w3_distributed_once(supervisor, 1000)
        seconds = [(await w3_distributed_once(supervisor, n))[0] for _ in range(runs)]
        firsts = []
        for _ in range(runs):
            firsts.append((await w3_distributed_once(supervisor, first_n))[1])
            await anyio.sleep(1.5)  # idle workers (their polls back off meanwhile)
    finally:
        await supervisor.aclose()
        broker.close()
    return seconds, firsts


def main(argv: list[str] | None = None) -> int:
    """Measure W3 through Dramatiq workers and print the medians."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.distributed")
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--first-n", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--redis-url")
    parser.add_argument("--backend", default="asyncio", choices=["asyncio", "trio"])
    parser.add_argument("--worker-timeout-ms", type=int)
    args = parser.parse_args(argv)
    with contextlib.ExitStack() as stack:
        url = args.redis_url or stack.enter_context(redis_server())
        stack.enter_context(
            dramatiq_stages(
                url, backend=args.backend, worker_timeout_ms=args.worker_timeout_ms
            )
        )
        seconds, firsts = anyio.run(
            dramatiq_w3, url, args.n, args.repeat, args.first_n, backend=args.backend
        )
    print(
        f"W3 through 3 Dramatiq workers ({args.backend}), N={args.n:,}: "
        f"{args.n / median(seconds):,.0f} values/s (median of {args.repeat}; "
        f"runs {', '.join(f'{s:.2f}' for s in seconds)} s)"
    )
    print(
        f"time from start_flow to the first final value, N={args.first_n:,}: "
        f"{median(firsts) * 1000:.0f} ms (runs "
        f"{', '.join(f'{f * 1000:.0f}' for f in firsts)} ms)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
