"""Latency and throughput of the Redis store on one server and on a 3-node cluster.

    python scripts/cluster_latency.py [--backend asyncio|trio] [--wakes 200]

Starts a throwaway redis-server and a throwaway 3-node Redis Cluster
(``tests/_redis_servers.py``, ``tests/_redis_cluster.py``) and measures on each:

- *wake*: a reader of one store object (another process, as far as the store can
  tell: a session and a wake stream or channel of its own) blocked on a stream,
  and a writer of a second store object appending to it; the time from the start
  of the append to the reader's return, ``--wakes`` times, each on a new run (so
  on the cluster the runs spread over every node);
- *W3*: the benchmark suite's W3 (``benchmarks/flows.py``) with N=``--n``, in one
  process; and its paced latency run (1,000 values/s), p50 and p99.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import uuid
from pathlib import Path

import anyio
from anyio import wait_all_tasks_blocked

from datagraph.stores.redis import RedisStore

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT))
from benchmarks import flows  # noqa: E402

from _redis_cluster import RedisCluster  # noqa: E402
from _redis_servers import RedisServer  # noqa: E402


async def wake_latencies(url: str, count: int) -> list[float]:
    """Seconds from a writer's append to the return of another store's read."""
    prefix = f"lat-{uuid.uuid4().hex[:8]}"
    found: list[float] = []
    async with (
        RedisStore(url, prefix=prefix) as reader_store,
        RedisStore(url, prefix=prefix) as writer_store,
    ):
        for _ in range(count):
            run_id = uuid.uuid4().hex
            returned: list[float] = []

            async def reader(
                run_id: str = run_id, returned: list[float] = returned
            ) -> None:
                await reader_store.read(run_id, "s", 0, timeout=30, reader="r")
                returned.append(anyio.current_time())

            async with anyio.create_task_group() as tg:
                tg.start_soon(reader)
                await wait_all_tasks_blocked()
                started = anyio.current_time()
                await writer_store.append(run_id, "s", 0, 1, b"x")
            found.append(returned[0] - started)
            await writer_store.delete_run(run_id)
    return found


def _ms(values: list[float], q: int) -> float:
    return statistics.quantiles(values, n=100)[q - 1] * 1000


async def measure(name: str, url: str, wakes: int, n: int) -> None:
    lat = await wake_latencies(url, wakes)
    worst = max(lat) * 1000
    print(f"{name}: wake across store objects p50 {_ms(lat, 50):.2f} ms, "
          f"p99 {_ms(lat, 99):.2f} ms, max {worst:.2f} ms ({wakes})")  # fmt: skip
    times = await flows.w3_times(url, n, 3)
    print(f"{name}: W3 N={n:,} median {statistics.median(times):.2f} s "
          f"({n / statistics.median(times):,.0f} values/s; runs {times})")  # fmt: skip
    paced = await flows.latency_run(url, 2000, 1000.0, 100)
    print(f"{name}: paced W3 latency p50 {_ms(paced, 50):.2f} ms, "
          f"p99 {_ms(paced, 99):.2f} ms")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", default="asyncio", choices=["asyncio", "trio"])
    parser.add_argument("--wakes", type=int, default=200)
    parser.add_argument("--n", type=int, default=200_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        (work / "one").mkdir()
        (work / "cluster").mkdir()
        with RedisServer(work / "one") as server, RedisCluster(work / "cluster") as cl:
            for name, url in (("one server", server.url), ("3-node cluster", cl.url)):
                anyio.run(measure, name, url, args.wakes, args.n, backend=args.backend)


if __name__ == "__main__":
    main()
