"""The store-fault experiments of ``docs/reliability.md``, against throwaway servers.

    python scripts/store_faults.py pause --seconds 30 --values 200000   # E1, E1b
    python scripts/store_faults.py stall --seconds 25 --store-timeout 10  # E2
    python scripts/store_faults.py restart --values 200000             # E3
    python scripts/store_faults.py big                                 # E4
    python scripts/store_faults.py huge                                # E5
    python scripts/store_faults.py urls                                # E6

Each starts its own redis-server (``tests/_redis_servers.py``; AOF with
``appendfsync always``), runs on ``--backend asyncio`` (default) or ``trio``, and
prints what happened with its timings.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio

from datagraph import IO, Flow, IOVal, LocalExecutor, Processor, Supervisor
from datagraph.stores.redis import RedisStore

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from _redis_servers import RedisServer, free_port

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

_produce = Processor(name="faults_produce", inputs=["n"], outputs=["numbers"])
_double = Processor(name="faults_double", inputs=["numbers"], outputs=["doubled"])
_blobs = Processor(name="faults_blobs", inputs=["n"], outputs=["blobs"])
_huge = Processor(name="faults_huge", inputs=["mb"], outputs=["blob"])


@_produce
async def _produce_impl(n: IO[int]) -> AsyncIterator[int]:
    for i in range(await n.first()):
        yield i


@_double
async def _double_impl(numbers: IO[int]) -> AsyncIterator[int]:
    async for value in numbers.stream():
        yield value * 2


@_blobs
async def _blobs_impl(n: IO[int]) -> AsyncIterator[bytes]:
    for i in range(await n.first()):
        yield bytes([i]) * (10 * 1024 * 1024)


@_huge
async def _huge_impl(mb: IO[int]) -> AsyncIterator[bytes]:
    yield b"x" * (await mb.first() * 1000 * 1000)


def _server() -> RedisServer:
    return RedisServer(Path(tempfile.mkdtemp(prefix="dg-faults-")), aof=True)


async def _flow_with_fault(args: argparse.Namespace, fault: str) -> None:
    """Run produce -> double; at a third of the output, pause/stall/restart Redis."""
    count = args.values
    with _server() as server:
        store = RedisStore(server.url, store_timeout=args.store_timeout)
        supervisor = Supervisor(store=store, executor=LocalExecutor())
        flow = Flow.from_processors(_produce, _double).resolve()
        async with store:
            started = hurt = time.monotonic()
            run = await supervisor.start_flow(flow, inputs=[IOVal("n", count)])
            seen: list[int] = []

            async def resume_later() -> None:
                await anyio.sleep(args.seconds)
                server.resume()
                print(f"resumed at {time.monotonic() - started:.1f}s")

            async with anyio.create_task_group() as outer:
                try:
                    async for value in run["doubled"].stream():
                        seen.append(value)
                        if len(seen) == count // 3:
                            hurt = time.monotonic()
                            print(f"{fault} at {hurt - started:.1f}s")
                            if fault == "restart":
                                server.restart()
                            else:
                                server.pause()
                                outer.start_soon(resume_later)
                except Exception as exc:  # the experiment reports whatever happens
                    print(f"reader: {type(exc).__name__} {time.monotonic() - hurt:.1f}s"
                          f" after the fault: {exc}")  # fmt: skip
            exact = seen == [2 * i for i in range(len(seen))]
            print(f"reader got {len(seen):,} of {count:,} values, exact: {exact}")
            try:
                with anyio.fail_after(120):
                    await run.wait()
                print(f"wait(): returned; status {await run.status()}")
            except Exception as exc:
                print(f"wait(): {type(exc).__name__}: {exc}")
            ended = time.monotonic()
            print(f"total {ended - started:.1f}s, {ended - hurt:.1f}s after the fault")


async def _big(args: argparse.Namespace) -> None:
    """30 values of 10 MB on one run while another streams 300,000 ints."""
    with _server() as server:
        async with RedisStore(server.url) as store:
            supervisor = Supervisor(store=store, executor=LocalExecutor())
            started = time.monotonic()
            a = await supervisor.start_flow(
                Flow.from_processors(_blobs).resolve(), inputs=[IOVal("n", 30)]
            )
            b = await supervisor.start_flow(
                Flow.from_processors(_produce).resolve(), inputs=[IOVal("n", 300_000)]
            )
            results: dict[str, Any] = {}

            async def read_a() -> None:
                ok = [v == bytes([i]) * len(v) async for i, v in _numbered(a["blobs"])]
                results["A"] = (len(ok), all(ok), time.monotonic() - started)

            async def read_b() -> None:
                got = await b["numbers"].collect()
                results["B"] = (len(got), got == list(range(300_000)))
                results["B"] += (time.monotonic() - started,)

            async with anyio.create_task_group() as tg:
                tg.start_soon(read_a)
                tg.start_soon(read_b)
            await a.wait()
            await b.wait()
            for name, (n, exact, seconds) in sorted(results.items()):
                print(f"run {name}: {n} values, exact: {exact}, {seconds:.1f}s")


async def _numbered(io: IO[bytes]) -> AsyncIterator[tuple[int, bytes]]:
    i = 0
    async for value in io.stream():
        yield i, value
        i += 1


async def _huge_values(args: argparse.Namespace) -> None:
    """A 600 MB value (over the limit), then a 120 MB one (under it)."""
    with _server() as server:
        async with RedisStore(server.url) as store:
            supervisor = Supervisor(store=store, executor=LocalExecutor())
            for mb in (600, 120):
                started = time.monotonic()
                run = await supervisor.start_flow(
                    Flow.from_processors(_huge).resolve(), inputs=[IOVal("mb", mb)]
                )
                try:
                    (got,) = await run["blob"].collect()
                    same = got == b"x" * (mb * 1000 * 1000)
                    print(f"{mb} MB: read back equal: {same}, "
                          f"{time.monotonic() - started:.1f}s")  # fmt: skip
                except Exception as exc:
                    print(f"{mb} MB: {type(exc).__name__} after "
                          f"{time.monotonic() - started:.1f}s: {exc}")  # fmt: skip


async def _urls(args: argparse.Namespace) -> None:
    """How long a wrong URL takes to fail, and what it says."""
    workdir = Path(tempfile.mkdtemp(prefix="dg-faults-"))
    with RedisServer(workdir, options=["--requirepass", "right"]) as server:
        wrong = server.url.replace("redis://", "redis://:wrong@")
        for url in (
            f"redis://127.0.0.1:{free_port()}/0",
            "redis://no-such-host.invalid:6379/0",
            wrong,
        ):
            started = time.monotonic()
            try:
                await RedisStore(url).state("run", "stream")
            except Exception as exc:
                took = (time.monotonic() - started) * 1000
                print(f"{took:.0f} ms: {type(exc).__name__}: {exc}")


def main() -> None:
    """Run one experiment."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("experiment", choices=["pause", "stall", "restart", "big",
                                               "huge", "urls"])  # fmt: skip
    parser.add_argument("--backend", choices=["asyncio", "trio"], default="asyncio")
    parser.add_argument("--values", type=int, default=200_000)
    parser.add_argument("--seconds", type=float, default=30.0, help="pause length")
    parser.add_argument("--store-timeout", type=float, default=60.0)
    args = parser.parse_args()
    experiments = {
        "pause": lambda: _flow_with_fault(args, "pause"),
        "stall": lambda: _flow_with_fault(args, "pause"),
        "restart": lambda: _flow_with_fault(args, "restart"),
        "big": lambda: _big(args),
        "huge": lambda: _huge_values(args),
        "urls": lambda: _urls(args),
    }
    anyio.run(experiments[args.experiment], backend=args.backend)


if __name__ == "__main__":
    main()
