"""W3: throughput of a 3-stage linear flow, end to end.

    python benchmarks/w3.py --n 1000000 --store memory --store redis \\
        --backend asyncio --backend trio --repeat 3 [--redis-url URL] [--quick]

The flow: ``source`` yields the ints 0..N-1, ``double`` yields x*2, ``increment``
yields x+1, and the caller streams the final output and checks its sum (N**2).
Each processor is written the plain way (``async for x in stream: yield f(x)``);
batching is Datagraph's business. A run is timed from ``start_flow`` until the
caller has read the last value and the run has finished.

The baseline, measured in the same process: the same three stages as tasks joined
by anyio memory object streams, one value per send (buffer 128).

With no ``--redis-url`` and a Redis store asked for, a throwaway ``redis-server``
is started on a free port and stopped afterwards.
"""

import argparse
import contextlib
import functools
import importlib.metadata
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass

import anyio
from anyio.abc import ObjectReceiveStream, ObjectSendStream

import datagraph
from datagraph import IO, Flow, IOVal, Processor, Supervisor

STORES = ("memory", "redis")
BACKENDS = ("asyncio", "trio")
BASELINE_BUFFER = 128
QUICK_N = 20_000

# ------------------------------------------------------------------------- the flow

source = Processor(name="w3_source", inputs=["n"], outputs=["numbers"])
double = Processor(name="w3_double", inputs=["numbers"], outputs=["doubled"])
increment = Processor(name="w3_increment", inputs=["doubled"], outputs=["out"])


@source
async def _source(n: IO[int]) -> AsyncIterator[int]:
    for i in range(await n.first()):
        yield i


@double
async def _double(numbers: IO[int]) -> AsyncIterator[int]:
    async for x in numbers.stream():
        yield x * 2


@increment
async def _increment(doubled: IO[int]) -> AsyncIterator[int]:
    async for x in doubled.stream():
        yield x + 1


FLOW = Flow.from_processors(source, double, increment).resolve()


async def run_flow(supervisor: Supervisor, n: int) -> float:
    """Run the flow once; return its duration in seconds."""
    start = time.perf_counter()
    run = await supervisor.start_flow(FLOW, inputs=[IOVal("n", n)])
    total = 0
    async for value in run["out"].stream():
        total += value
    await run.wait()
    elapsed = time.perf_counter() - start
    await supervisor.store.delete_run(run.id)
    check(total, n)
    return elapsed


async def measure_flow(redis_url: str | None, n: int, repeat: int) -> list[float]:
    """Time ``repeat`` runs on one store, after a small warm-up run."""
    config = {"url": redis_url} if redis_url else None
    supervisor = Supervisor(redis_config=config)
    try:
        await run_flow(supervisor, min(n, 1000))  # connect, build call models
        return [await run_flow(supervisor, n) for _ in range(repeat)]
    finally:
        await supervisor.aclose()


# ------------------------------------------------------------------------ baseline


async def _produce(n: int, send: ObjectSendStream[int]) -> None:
    async with send:
        for i in range(n):
            await send.send(i)


async def _stage(
    func: Callable[[int], int],
    receive: ObjectReceiveStream[int],
    send: ObjectSendStream[int],
) -> None:
    async with receive, send:
        async for x in receive:
            await send.send(func(x))


def _double_value(x: int) -> int:
    return x * 2


def _increment_value(x: int) -> int:
    return x + 1


async def run_baseline(n: int) -> float:
    """Run the same stages over anyio memory object streams; return seconds."""
    start = time.perf_counter()
    send1, receive1 = anyio.create_memory_object_stream[int](BASELINE_BUFFER)
    send2, receive2 = anyio.create_memory_object_stream[int](BASELINE_BUFFER)
    send3, receive3 = anyio.create_memory_object_stream[int](BASELINE_BUFFER)
    total = 0
    async with anyio.create_task_group() as tg:
        tg.start_soon(_produce, n, send1)
        tg.start_soon(_stage, _double_value, receive1, send2)
        tg.start_soon(_stage, _increment_value, receive2, send3)
        async with receive3:
            async for value in receive3:
                total += value
    elapsed = time.perf_counter() - start
    check(total, n)
    return elapsed


async def measure_baseline(n: int, repeat: int) -> list[float]:
    """Time ``repeat`` baseline runs."""
    await run_baseline(min(n, 1000))
    return [await run_baseline(n) for _ in range(repeat)]


# ------------------------------------------------------------------------- harness


def check(total: int, n: int) -> None:
    """Fail loudly when a run lost, duplicated or mangled values."""
    if total != n * n:
        msg = f"wrong result for N={n}: sum {total}, expected {n * n}"
        raise AssertionError(msg)


@dataclass(frozen=True)
class Result:
    """The timings of one pipeline on one store and backend."""

    pipeline: str
    store: str
    backend: str
    n: int
    seconds: list[float]

    @property
    def rate(self) -> float:
        """Items per second, from the median run."""
        return self.n / statistics.median(self.seconds)


def free_port() -> int:
    """Return a TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _ping(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


@contextlib.contextmanager
def redis_server() -> Iterator[str]:
    """Start a throwaway redis-server on a free port; yield its URL."""
    binary = shutil.which("redis-server") or "/usr/bin/redis-server"
    port = free_port()
    with tempfile.TemporaryFile() as log:
        process = subprocess.Popen(
            [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no"],
            stdout=log,
            stderr=subprocess.STDOUT,
        )  # fmt: skip
        try:
            deadline = time.monotonic() + 10
            while not _ping(port):
                if process.poll() is not None or time.monotonic() > deadline:
                    log.seek(0)
                    output = log.read().decode(errors="replace")
                    msg = f"redis-server did not start on port {port}:\n{output}"
                    raise RuntimeError(msg)
                time.sleep(0.05)
            yield f"redis://127.0.0.1:{port}/0"
        finally:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def timed(backend: str, func: Callable[[], Awaitable[list[float]]]) -> list[float]:
    """Run ``func`` in a fresh event loop of ``backend``."""
    return anyio.run(func, backend=backend)


class Table:
    """Prints one row per result as soon as it is measured."""

    HEADER = (
        f"{'pipeline':<28} {'backend':<8} {'items/s':>12} {'vs baseline':>12}   "
        "runs (s)"
    )

    def __init__(self) -> None:
        self.baselines: dict[str, float] = {}
        print(self.HEADER)
        print("-" * len(self.HEADER), flush=True)

    def add(self, r: Result) -> None:
        """Print a result; a baseline must come before the flows it is compared to."""
        if r.pipeline == "baseline":
            self.baselines[r.backend] = r.rate
            name = f"anyio streams, buffer {BASELINE_BUFFER}"
        else:
            name = f"datagraph, {r.store} store"
        base = self.baselines.get(r.backend)
        ratio = f"{r.rate / base:.2f}x" if base else "-"
        runs = " ".join(f"{s:.3f}" for s in r.seconds)
        print(
            f"{name:<28} {r.backend:<8} {r.rate:>12,.0f} {ratio:>12}   {runs}",
            flush=True,
        )


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark as the command line asks."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=1_000_000, help="values per run")
    parser.add_argument(
        "--store",
        action="append",
        choices=STORES,
        help="store to measure (repeatable; default: both)",
    )
    parser.add_argument(
        "--backend",
        action="append",
        choices=BACKENDS,
        help="event loop to measure on (repeatable; default: both)",
    )
    parser.add_argument("--repeat", type=int, default=3, help="timed runs per cell")
    parser.add_argument(
        "--redis-url", help="use this Redis/Valkey instead of a throwaway redis-server"
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"smoke run: N={QUICK_N:,} and one timed run",
    )
    args = parser.parse_args(argv)
    n: int = QUICK_N if args.quick else args.n
    repeat: int = 1 if args.quick else args.repeat
    if n < 1 or repeat < 1:
        parser.error("--n and --repeat must be positive")
    stores: list[str] = list(dict.fromkeys(args.store or STORES))
    backends: list[str] = list(dict.fromkeys(args.backend or BACKENDS))

    versions = (
        f"datagraph {datagraph.__version__}, "
        f"anyio {importlib.metadata.version('anyio')}, "
        f"Python {platform.python_version()}"
    )
    print(f"W3: source -> x*2 -> x+1, N={n:,}, median of {repeat} run(s); {versions}")
    with contextlib.ExitStack() as stack:
        redis_url: str | None = args.redis_url
        if "redis" in stores and not redis_url:
            redis_url = stack.enter_context(redis_server())
            print(f"redis: throwaway redis-server at {redis_url}")
        elif redis_url and "redis" in stores:
            print(f"redis: {redis_url.rpartition('@')[2]}")  # no password
        print(flush=True)
        table = Table()
        for backend in backends:
            seconds = timed(backend, functools.partial(measure_baseline, n, repeat))
            table.add(Result("baseline", "-", backend, n, seconds))
            for store in stores:
                url = redis_url if store == "redis" else None
                seconds = timed(
                    backend, functools.partial(measure_flow, url, n, repeat)
                )
                table.add(Result("datagraph", store, backend, n, seconds))
    return 0


if __name__ == "__main__":
    sys.exit(main())
